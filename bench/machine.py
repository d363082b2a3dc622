"""What every benchmark records next to its figures: the machine, the date, and a result file.

The bench scripts import this sibling module (``python bench/<name>.py`` puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results"
_STARTED = (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), os.getloadavg())  # when the script started


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def describe() -> dict[str, Any]:
    """The machine and software a figure was measured on (nproc, CPU model, RAM, Python/JAX, load)."""
    return {
        "date_utc": _STARTED[0],
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "tunix_rt": _version("tunix-rt"),
        "git_commit": _git_commit(),
        "loadavg_at_start": [round(x, 2) for x in _STARTED[1]],
    }


def out_arg(parser: argparse.ArgumentParser) -> None:
    """The ``--out`` flag every bench script takes."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON result (default: {DEFAULT_OUT})")


def write_result(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write ``<out_dir>/<name>.json`` (sorted keys, indent 2) with the machine and command added."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "command": " ".join(["python", *sys.argv]), **result}
    record.setdefault("machine", describe())
    record["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def median(values: Iterable[float | None]) -> float | None:
    """Median of the non-None values (None when there are none)."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain right-aligned text table (floats with 3 significant decimals)."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
