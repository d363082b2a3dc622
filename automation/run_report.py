"""The run report: ``report.html`` (one self-contained static page) and ``loss.png``, in the run directory.

Written by ``tunix-rt report RUN_DIR``, and by ``rehearse`` and ``pull`` right after the evidence. What it
reads, all from the run directory:

* the evidence (required): ``run_manifest.json`` (environment, versions, timings by phase, Kaggle kernel
  and version, bundle sha256) and ``eval_summary.json`` (scores and the eval set's size);
* the kernel's outputs when present: ``outputs/output/metrics.jsonl`` (the loss curve: ``loss`` per
  logged step, and ``eval_loss`` where a row has one), ``predictions.jsonl`` (the per-item table),
  ``eval_results.json`` (scores by category) and ``run_result.json`` (the full version list).

Without ``outputs/`` (a committed evidence folder keeps only evidence) the loss curve and the item table
cannot be drawn, so the report written while the outputs were there is the one to keep: it is committed
next to the evidence and packaged in the zip. ``tunix-rt report`` on such a folder refuses to overwrite an
existing report (exit 2); with no report yet it writes one from the evidence alone, saying what is missing.

Deterministic: the same run directory gives the same bytes (no clock, no random ids; the PNG is drawn by
the pinned matplotlib's Agg canvas without its Software/date metadata, and embedded as a data URI, so the
page needs no other file and makes no request).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunix_rt.training import contract

from .errors import EXIT_USAGE, TunixRtError
from .evidence import MANIFEST_FILE, SUMMARY_FILE
from .fsutil import read_json, read_json_object, write_atomic
from .layout import OUTPUTS_DIR, TRAIN_OUTPUT_SUBDIR

REPORT_HTML = "report.html"
LOSS_PNG = "loss.png"
REPORT_FILES = (REPORT_HTML, LOSS_PNG)

PLOT_SIZE_IN = (10.0, 3.6)  # figure size in inches, at PLOT_DPI: 1000 x 360 px
PLOT_DPI = 100
# Explicit style: the user's matplotlibrc must not change the committed bytes.
_RC = {
    # Shipped with matplotlib, whose own font folder is scanned first: a system copy of the same family
    # (another version, other glyph shapes) ties and loses, so the bytes do not depend on the machine's fonts.
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "tunix-rt",  # in case anyone saves the figure as SVG: no random ids
    "path.simplify": True,
}
TRAIN_COLOR = "#1f6feb"
EVAL_COLOR = "#d9480f"


@dataclass
class ReportData:
    """Everything the report shows, read from one run directory."""

    run_dir: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows of metrics.jsonl with a numeric step
    items: list[dict[str, Any]] | None = None  # predictions.jsonl records (None: file absent)
    eval_results: dict[str, Any] | None = None
    run_result: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read, said in the report

    @property
    def train_points(self) -> list[tuple[int, float]]:
        return _points(self.metrics, "loss")

    @property
    def eval_points(self) -> list[tuple[int, float]]:
        return _points(self.metrics, "eval_loss")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    png: Path
    html_bytes: int
    png_bytes: int
    items: int
    points: int


def _points(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    out = []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # not NaN
            out.append((row["step"], float(value)))
    return out


def _read_jsonl(path: Path, notes: list[str], shown: str) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    rows, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                bad += 1
                continue
            if isinstance(obj, dict):
                rows.append(obj)
            else:
                bad += 1
    if bad:
        notes.append(f"{shown}: {bad} unreadable line(s) skipped")
    return rows


def _read_object(path: Path, notes: list[str], shown: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    obj = read_json_object(path)
    if obj is None:
        notes.append(f"{shown}: unreadable or not a JSON object, left out")
    return obj


def load_report_data(run_dir: Path) -> ReportData:
    """Read the evidence (required) and the outputs (when present) of ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TunixRtError(f"{run_dir}: no such run directory", EXIT_USAGE)
    docs: list[dict[str, Any]] = []
    for name in (MANIFEST_FILE, SUMMARY_FILE):
        path = run_dir / name
        if not path.is_file():
            raise TunixRtError(f"{path}: missing; the report is drawn from the run's evidence (run `tunix-rt "
                               "rehearse` or `tunix-rt pull` first)", EXIT_USAGE)
        try:
            doc = read_json(path)
        except (OSError, ValueError, RecursionError) as exc:
            raise TunixRtError(f"{path}: not valid JSON ({exc.__class__.__name__})", EXIT_USAGE) from None
        if not isinstance(doc, dict):
            raise TunixRtError(f"{path}: not a JSON object", EXIT_USAGE)
        docs.append(doc)
    data = ReportData(run_dir, docs[0], docs[1])
    out = run_dir / OUTPUTS_DIR / TRAIN_OUTPUT_SUBDIR
    rel = f"{OUTPUTS_DIR}/{TRAIN_OUTPUT_SUBDIR}"
    metrics = _read_jsonl(out / contract.METRICS, data.notes, f"{rel}/{contract.METRICS}")
    if metrics is None:
        data.notes.append(f"{rel}/{contract.METRICS} is not in this run directory: no loss curve")
    else:
        data.metrics = sorted((r for r in metrics if isinstance(r.get("step"), int)), key=lambda r: r["step"])
    data.items = _read_jsonl(out / contract.PREDICTIONS, data.notes, f"{rel}/{contract.PREDICTIONS}")
    if data.items is None:
        data.notes.append(f"{rel}/{contract.PREDICTIONS} is not in this run directory: no per-item table")
    data.eval_results = _read_object(out / contract.EVAL_RESULTS, data.notes, f"{rel}/{contract.EVAL_RESULTS}")
    data.run_result = _read_object(out / contract.RUN_RESULT, data.notes, f"{rel}/{contract.RUN_RESULT}")
    return data


def loss_png(data: ReportData) -> bytes:
    """The loss curve over steps (train, and eval where present) as PNG bytes, deterministically."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train, evals = data.train_points, data.eval_points
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
        FigureCanvasAgg(fig)  # the Agg canvas: no GUI backend, no pyplot state
        ax = fig.add_subplot()
        for points, label, color, marker in ((train, "train loss", TRAIN_COLOR, "o"),
                                             (evals, "eval loss", EVAL_COLOR, "s")):
            if points:
                steps, losses = zip(*points, strict=True)
                ax.plot(steps, losses, color=color, linewidth=1.8, label=label,
                        marker=marker if len(points) <= 60 else None, markersize=4)
        if train or evals:
            ax.legend(loc="upper right", frameon=False)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.xaxis.get_major_locator().set_params(integer=True)
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no loss values in this run directory\n(outputs/output/metrics.jsonl absent)",
                    ha="center", va="center", color="#57606a", transform=ax.transAxes)
        ax.set_title(f"{data.manifest.get('run_version') or data.run_dir.name}: loss over training steps",
                     loc="left", fontsize=11)
        fig.tight_layout()
        buf = io.BytesIO()
        # Software carries the matplotlib version; PNG gets no date from matplotlib, and none is added.
        fig.savefig(buf, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    return buf.getvalue()


def write_report(run_dir: Path) -> ReportFiles:
    """Write ``loss.png`` and ``report.html`` into ``run_dir`` (atomically) and return what was written.

    Refuses (exit 2) to replace an existing report in a folder without ``outputs/``: that report holds the
    loss curve and item table the evidence alone cannot give back."""
    from .report_html import render_html

    run_dir = Path(run_dir)
    data = load_report_data(run_dir)
    html_path, png_path = run_dir / REPORT_HTML, run_dir / LOSS_PNG
    if not (run_dir / OUTPUTS_DIR).is_dir() and html_path.exists():
        raise TunixRtError(f"{run_dir}: no {OUTPUTS_DIR}/ folder, so a new report would lose the loss "
                           f"curve and item table that {REPORT_HTML} (written with the outputs) has; keeping it",
                           EXIT_USAGE)
    png = loss_png(data)
    size = (round(PLOT_SIZE_IN[0] * PLOT_DPI), round(PLOT_SIZE_IN[1] * PLOT_DPI))
    html = render_html(data, png, png_name=LOSS_PNG, png_size=size)
    write_atomic(png_path, png)
    write_atomic(html_path, html)
    return ReportFiles(html_path, png_path, len(html.encode("utf-8")), len(png), len(data.items or []),
                       len(data.train_points))
