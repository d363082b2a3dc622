"""CLI start-up cost: ``tunix-rt --help`` and ``tunix-rt validate RUN_DIR`` against ``python -c pass``.

    python bench/cli_startup.py [--repeat 40] [--run-dir DIR] [--out bench/results]

The three commands run interleaved (pass, help, validate, pass, help, …) so that machine noise hits them
alike; the figures are medians and each command's median excess over bare Python. ``RUN_DIR`` must hold
valid evidence (default: the first folder under ``submission_runs/`` — make one with
``tunix-rt rehearse --backend local``). Goals (issue 5): ``--help`` ≤ 0.25 s and ``validate`` ≤ 0.5 s above
bare Python. The slowest imports of ``validate`` are listed from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import median, out_arg, table, write_result

GOALS_S = {"help": 0.25, "validate": 0.5}


def _tunix_rt() -> str:
    here = Path(sys.executable).parent / "tunix-rt"
    found = str(here) if here.exists() else shutil.which("tunix-rt")
    if not found:
        sys.exit("cli_startup: the tunix-rt console script is not installed (pip install -e .)")
    return found


def _default_run_dir() -> Path | None:
    from tunix_rt import paths

    runs = sorted(p for p in paths.submission_runs_dir().glob("*") if (p / "run_manifest.json").is_file())
    return runs[0] if runs else None


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"cli_startup: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return wall


def slowest_imports(cmd: list[str], n: int = 8) -> list[tuple[str, float]]:
    """The top-level imports with the largest cumulative time under ``-X importtime`` (seconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True,
                          check=False)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # top-level imports only (indent 1)
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=40, help="runs of each command (default 40)")
    p.add_argument("--run-dir", type=Path, help="a run directory with valid evidence")
    out_arg(p)
    args = p.parse_args(argv)
    run_dir = args.run_dir or _default_run_dir()
    if run_dir is None:
        sys.exit("cli_startup: no run directory with evidence; pass --run-dir "
                 "(tunix-rt rehearse --backend local makes one)")
    exe = _tunix_rt()
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "help": [exe, "--help"],
        "validate": [exe, "validate", str(run_dir)],
    }
    for cmd in cmds.values():  # warm the page cache and .pyc files
        _time(cmd)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeat):
        for name, cmd in cmds.items():
            times[name].append(_time(cmd))
    base = median(times["python -c pass"]) or 0.0
    rows, figures = [], {}
    for name, ts in times.items():
        med = median(ts) or 0.0
        # Excess per repetition (same round), then its median: robust against drifting load.
        excess = median(t - b for t, b in zip(ts, times["python -c pass"], strict=True))
        goal = GOALS_S.get(name)
        met = None if goal is None else excess is not None and excess <= goal
        figures[name] = {"median_s": med, "min_s": min(ts), "max_s": max(ts),
                         "excess_over_python_s": excess, "ratio_to_python": med / base if base else None,
                         "goal_excess_s": goal, "goal_met": met}
        rows.append((name, med, min(ts), max(ts), excess, figures[name]["ratio_to_python"],
                     "-" if goal is None else f"<= {goal} {'met' if met else 'MISSED'}"))
    print(table(["command", "median s", "min s", "max s", "excess s", "ratio", "goal (excess)"], rows))
    imports = slowest_imports(["-m", "tunix_rt", "validate", str(run_dir)])
    print("slowest top-level imports of validate:", ", ".join(f"{m} {s * 1000:.0f} ms" for m, s in imports))
    path = write_result(args.out, "cli_startup", {
        "repeat": args.repeat, "run_dir": str(run_dir), "figures": figures,
        "validate_slowest_imports_s": imports,
    })
    print(f"result: {path}")
    return 0 if all(f["goal_met"] is not False for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
