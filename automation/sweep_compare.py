"""The comparison of a sweep: ``DIR/comparison.json``, ``comparison.md`` and ``comparison.html``.

One row per point of the plan (sweep.json), read from the point's run directory only — its run state, its
evidence (``eval_summary.json``, ``run_manifest.json``) and, for the loss curve, ``outputs/output/metrics.jsonl``
— so a rerun that finds every point done writes the same comparison, and every value comes from the runs.
Rows are ranked by answer_correctness (then format compliance, then the lower final loss; points without a
score last). The HTML page is in the run report's style (report_html.py: its CSS, every value redacted and
escaped, no script, nothing fetched) with one plot drawn by matplotlib's Agg canvas and embedded as a data URI:
the score per point, and the loss curves overlaid.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import TunixRtError
from .evidence import MANIFEST_FILE, SUMMARY_FILE
from .fsutil import dumps_json, read_json_object, write_atomic
from .layout import OUTPUTS_DIR, TRAIN_OUTPUT_SUBDIR
from .runstate import RunState, utc_epoch
from .sweep import point_status
from .sweep_plan import PLAN_FILE

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
COMPARISON_HTML = "comparison.html"
COMPARISON_SCHEMA = 1
PLOT_SIZE_IN = (11.0, 3.8)


@dataclass(frozen=True)
class Comparison:
    """What :func:`write_comparison` wrote."""

    json_path: Path
    md_path: Path
    html_path: Path
    rows: list[dict[str, Any]]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read(path: Path) -> dict[str, Any]:
    return read_json_object(path) or {}


def point_row(entry: dict[str, Any], sweep_dir: Path) -> dict[str, Any]:
    """The comparison row of one plan entry, from its run directory."""
    run_dir = sweep_dir / str(entry["run_dir"])
    state = RunState.read(run_dir) if run_dir.is_dir() else RunState.new(run_dir)
    status, error = point_status(state)
    summary, manifest = _read(run_dir / SUMMARY_FILE), _read(run_dir / MANIFEST_FILE)
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    training = manifest.get("training") if isinstance(manifest.get("training"), dict) else {}
    kaggle = state.kaggle
    pushed, ended = (utc_epoch(kaggle.pushed_at), utc_epoch(kaggle.finished_at)) if kaggle else (None, None)
    package = state.stage("package")
    zip_path = package.details.get("zip") if package is not None and package.done else None
    return {
        "point": entry["id"],
        "settings": entry.get("settings", {}),
        "kernel_ref": (kaggle.kernel_ref if kaggle and kaggle.kernel_ref else entry.get("kernel_ref")),
        "version": kaggle.version_number if kaggle else None,
        "status": status,
        "kaggle_status": str(kaggle.status) if kaggle and kaggle.status else None,
        "final_loss": _num(metrics.get("final_loss", training.get("final_loss"))),
        "answer_correctness": _num(metrics.get("answer_correctness")),
        "format_compliance": _num(metrics.get("format_compliance")),
        "tokens_per_second": _num(training.get("tokens_per_second")),
        "wall_s": round(ended - pushed, 1) if pushed is not None and ended is not None else None,
        "zip": Path(zip_path).name if zip_path else None,
        "run_dir": entry["run_dir"],
        "error": error,
    }


def _rank_key(row: dict[str, Any]) -> tuple[Any, ...]:
    def desc(v: float | None) -> float:
        return -v if v is not None else float("inf")

    loss = row["final_loss"]
    return (desc(row["answer_correctness"]), desc(row["format_compliance"]),
            loss if loss is not None else float("inf"), row["point"])


def comparison_rows(sweep_dir: Path, point_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the plan's points (``point_ids``: only these), ranked; each gets its ``rank``."""
    plan = _read(Path(sweep_dir) / PLAN_FILE)
    entries = [e for e in plan.get("points", []) if point_ids is None or e.get("id") in point_ids]
    rows = sorted((point_row(e, Path(sweep_dir)) for e in entries), key=_rank_key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def _loss_curve(sweep_dir: Path, run_dir: str) -> list[tuple[int, float]]:
    from .run_report import load_report_data

    if not (sweep_dir / run_dir / OUTPUTS_DIR / TRAIN_OUTPUT_SUBDIR).is_dir():
        return []
    try:
        return load_report_data(sweep_dir / run_dir).train_points
    except TunixRtError:
        return []


def _fmt(value: Any, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, float) else ("n/a" if value is None else str(value))


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def comparison_png(rows: list[dict[str, Any]], curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """Score per point (bars) and the loss curves overlaid, as PNG bytes (deterministic)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .run_report import _RC, PLOT_DPI

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
        FigureCanvasAgg(fig)
        bars, lines = fig.subplots(1, 2)
        names = [r["point"] for r in rows]
        xs = range(len(rows))
        for offset, key, label, color in ((-0.2, "answer_correctness", "answer correctness", "#1f6feb"),
                                          (0.2, "format_compliance", "format compliance", "#8250df")):
            drawn_bars = bars.bar([x + offset for x in xs], [r[key] or 0.0 for r in rows], width=0.4, label=label,
                                  color=color)
            bars.bar_label(drawn_bars, labels=[_fmt(r[key], ".2f") for r in rows], fontsize=7, padding=1)
        bars.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        bars.set_ylim(0, 1.05)
        bars.set_title("score per point (ranked)", loc="left", fontsize=11)
        bars.legend(loc="upper right", frameon=False, fontsize=8)
        drawn = False
        for row in rows:
            points = curves.get(row["point"]) or []
            if points:
                steps, losses = zip(*points, strict=True)
                lines.plot(steps, losses, linewidth=1.6, label=row["point"],
                           marker="o" if len(points) <= 60 else None, markersize=3)
                drawn = True
        if drawn:
            lines.legend(loc="upper right", frameon=False, fontsize=8)
            lines.set_xlabel("step")
            lines.set_ylabel("loss")
            lines.xaxis.get_major_locator().set_params(integer=True)
        else:
            lines.set_axis_off()
            lines.text(0.5, 0.5, "no loss values yet", ha="center", va="center", color="#57606a",
                       transform=lines.transAxes)
        lines.set_title("loss curves", loc="left", fontsize=11)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    return buf.getvalue()


_COLUMNS = (("rank", "#"), ("point", "point"), ("settings", "settings"), ("status", "status"),
            ("answer_correctness", "answer correctness"), ("format_compliance", "format compliance"),
            ("final_loss", "final loss"), ("tokens_per_second", "tokens/s"), ("wall_s", "wall s"),
            ("kernel_ref", "kernel"), ("version", "version"), ("zip", "zip"))


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key == "settings":
        return _settings_text(value)
    if key == "tokens_per_second" or key == "wall_s":
        return _fmt(value, ".1f")
    if key == "status" and row.get("error"):
        return f"{value} ({row['error']})"
    return _fmt(value)


def render_markdown(rows: list[dict[str, Any]], title: str) -> str:
    head = "| " + " | ".join(label for _, label in _COLUMNS) + " |"
    rule = "|" + "|".join("---:" if key in ("rank", "answer_correctness", "format_compliance", "final_loss",
                                           "tokens_per_second", "wall_s", "version") else "---"
                          for key, _ in _COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(r, k).replace("|", "\\|") for k, _ in _COLUMNS) + " |" for r in rows]
    return (f"# Sweep {title}\n\nRanked by answer_correctness (then format compliance, then final loss). "
            "Every value comes from the point's run directory.\n\n" + "\n".join([head, rule, *body]) + "\n")


def render_html(rows: list[dict[str, Any]], png: bytes, title: str) -> str:
    from .report_html import CSS, _Text

    t = _Text()
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if k in ("rank", "version") else ""}">{t(_cell(r, k))}</td>'
                                    for k, _ in _COLUMNS) + "</tr>" for r in rows)
    data = base64.b64encode(png).decode("ascii")
    size = (round(PLOT_SIZE_IN[0] * 100), round(PLOT_SIZE_IN[1] * 100))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>tunix-rt sweep: {t(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n"
        f"<h1>Sweep {t(title)}</h1><p class=\"sub\">{len(rows)} points, ranked by answer correctness</p>\n"
        '<section id="plot"><h2>Scores and loss curves</h2><figure><div class="plot">'
        f'<img alt="score per point and loss curves" width="{size[0]}" height="{size[1]}" '
        f'src="data:image/png;base64,{data}"></div></figure></section>\n'
        f'<section id="points"><h2>Points</h2><table><tr>{head}</tr>{body}</table></section>\n'
        f"<footer>Written by tunix-rt {html.escape(__version__)} (<code>tunix-rt sweep</code>) from each point's "
        "run_state.json, evidence and outputs/output/metrics.jsonl. A static page: no script, nothing fetched."
        "</footer>\n</main>\n</body>\n</html>\n"
    )


def write_comparison(sweep_dir: Path, point_ids: list[str] | None = None) -> Comparison:
    """Write comparison.json, .md and .html into ``sweep_dir`` (atomically) from the points' run dirs."""
    sweep_dir = Path(sweep_dir)
    plan = _read(sweep_dir / PLAN_FILE)
    rows = comparison_rows(sweep_dir, point_ids)
    title = str(plan.get("kernel_prefix") or sweep_dir.name)
    doc = {"schema": COMPARISON_SCHEMA, "kernel_prefix": plan.get("kernel_prefix"), "mode": plan.get("mode"),
           "accelerator": plan.get("accelerator"), "config": plan.get("config"),
           "ranked_by": "answer_correctness", "rows": rows}
    curves = {r["point"]: _loss_curve(sweep_dir, r["run_dir"]) for r in rows}
    paths = (sweep_dir / COMPARISON_JSON, sweep_dir / COMPARISON_MD, sweep_dir / COMPARISON_HTML)
    write_atomic(paths[0], dumps_json(doc).encode("utf-8"))
    write_atomic(paths[1], render_markdown(rows, title).encode("utf-8"))
    write_atomic(paths[2], render_html(rows, comparison_png(rows, curves), title).encode("utf-8"))
    return Comparison(*paths, rows)
