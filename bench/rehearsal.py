"""Rehearsal wall time (smoke, tiny config, warm) of ``tunix-rt rehearse`` per backend, split into phases.

    python bench/rehearsal.py [--repeat 3] [--variants local,docker] [--run-root DIR] [--out DIR]

Each variant runs once to warm up (image build, page cache, .pyc), then ``--repeat`` rounds run the
variants interleaved (local, docker, local, docker, …) so that machine noise hits them alike. One run is
exactly ``tunix-rt rehearse --backend B --mode smoke --run-dir DIR`` in a subprocess. Its phases come from:

* the kernel's ``output/run_result.json`` ``timings_s``: JAX/Tunix import, data, model init, compile (JIT +
  first step), train steps, generation, scoring;
* papermill's per-cell durations in the executed notebook (``outputs/__notebook__.ipynb``): the training
  cell minus ``timings_s.total`` is the training process's interpreter start and exit and its input
  checks; the other cells (dataset check, re-scoring CLI, summary) are "other notebook cells";
* the runner's wall time (run_state ``stages.execute.wall_s``) minus all cells: papermill, the Jupyter
  kernel's start/stop and, for Docker, the container's start and stop;
* the command's own wall time minus the runner's: tunix-rt start-up, bundle, evidence and validation. Bundle
  and evidence+validation are timed again, with their imports, in a fresh interpreter on the finished run
  directory to split that share; the rest is the CLI's start and the runner's set-up and clean-up.

Variants: ``local``, ``docker`` (needs a daemon: ``eval "$(docker/start_dockerd.sh)"``, and without a
registry ``TUNIX_RT_BASE_IMAGE=tunix-rt/debian:bookworm``), and ``local+nocache`` / ``docker+nocache`` with
the JAX compilation cache off (``TUNIX_RT_JAX_CACHE=0``; the runners keep one per backend under
``~/.cache/tunix-rt``). Goals (issue 5): local ≤ 20 s on 2 cores; Docker ≤ local + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import median, out_arg, table, write_result

GOAL_LOCAL_S = 20.0
GOAL_DOCKER_EXTRA_S = 2.0
TRAIN_PHASES = ("import", "data", "model_init", "compile", "train", "generate", "score", "checkpoint")
PHASES = (
    "tunix-rt CLI start, runner set-up (rest)", "bundle", "papermill + kernel/container start/stop",
    "other notebook cells", "train_jax: interpreter start/exit, input checks",
    *(f"train_jax: {p}" for p in TRAIN_PHASES), "evidence + validate",
)
# variant -> (backend, extra environment)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "local": ("local", {}),
    "docker": ("docker", {}),
    "local+nocache": ("local", {"TUNIX_RT_JAX_CACHE": "0"}),
    "docker+nocache": ("docker", {"TUNIX_RT_JAX_CACHE": "0"}),
}


def _tunix_rt() -> str:
    here = Path(sys.executable).parent / "tunix-rt"
    return str(here) if here.exists() else (shutil.which("tunix-rt") or "tunix-rt")


def _cells(run_dir: Path) -> tuple[float, float | None, float]:
    """(sum of all cell durations, the training cell's duration, the other cells') from papermill."""
    nb = json.loads((run_dir / "outputs" / "__notebook__.ipynb").read_text(encoding="utf-8"))
    total, train = 0.0, None
    for cell in nb["cells"]:
        d = (cell.get("metadata", {}).get("papermill", {}) or {}).get("duration") or 0.0
        total += d
        if "SMOKE_CMD" in "".join(cell.get("source", [])) and cell["cell_type"] == "code":
            train = d
    return total, train, total - (train or 0.0)


_STAGE_CHILD = r"""
import sys, time
from pathlib import Path
run_dir, scratch = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
from tunix_rt.bundle import build_bundle
build_bundle(scratch / run_dir.name, mode="smoke", accelerator="cpu")
t1 = time.perf_counter()
from tunix_rt.evidence import fill_evidence
from tunix_rt.validate import validate_run_dir
fill_evidence(run_dir)
problems = validate_run_dir(run_dir)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, len(problems))
"""


def _stage_costs(run_dir: Path) -> tuple[float, float]:
    """(bundle build, evidence + validation) of this run, each timed with its imports as the command pays
    them, in a fresh interpreter (the bundle goes to a scratch folder; the evidence is rewritten in place)."""
    with tempfile.TemporaryDirectory(prefix="tunix-rt-bench-bundle-") as tmp:
        proc = subprocess.run([sys.executable, "-c", _STAGE_CHILD, str(run_dir), tmp], capture_output=True,
                              text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"rehearsal: timing bundle/evidence failed: {proc.stderr[-800:]}")
    bundle_s, evidence_s, problems = proc.stdout.split()
    if int(problems):
        raise SystemExit(f"rehearsal: {run_dir}: invalid evidence after the run")
    return float(bundle_s), float(evidence_s)


def run_once(variant: str, run_dir: Path) -> dict[str, Any]:
    """One ``tunix-rt rehearse`` run; returns its wall time and phases."""
    backend, extra = VARIANTS[variant]
    cmd = [_tunix_rt(), "rehearse", "--backend", backend, "--mode", "smoke", "--run-dir", str(run_dir)]
    env = {**os.environ, **extra}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise SystemExit(f"rehearsal: {' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    state = json.loads((run_dir / "run_state.json").read_text(encoding="utf-8"))
    runner_s = float(state["stages"]["execute"]["wall_s"])
    result = json.loads((run_dir / "outputs" / "output" / "run_result.json").read_text(encoding="utf-8"))
    tm = result["timings_s"]
    cells_s, train_cell_s, other_cells_s = _cells(run_dir)
    bundle_s, evidence_s = _stage_costs(run_dir)
    phases = {
        "tunix-rt CLI start, runner set-up (rest)": max(0.0, wall - runner_s - bundle_s - evidence_s),
        "bundle": bundle_s,
        "papermill + kernel/container start/stop": runner_s - cells_s,
        "other notebook cells": other_cells_s,
        "train_jax: interpreter start/exit, input checks": (train_cell_s or 0.0) - (tm.get("total") or 0.0),
        **{f"train_jax: {p}": float(tm.get(p) or 0.0) for p in TRAIN_PHASES},
        "evidence + validate": evidence_s,
    }
    return {"variant": variant, "wall_s": wall, "runner_s": runner_s, "train_total_s": tm.get("total"),
            "phases": phases, "tokens_per_second": result["training"]["tokens_per_second"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="measured rounds after the warm-up (default 3)")
    p.add_argument("--variants", default="local,docker",
                   help=f"comma-separated, from {', '.join(VARIANTS)} (default local,docker)")
    p.add_argument("--run-root", type=Path, help="where the run directories go (default: a temp folder)")
    out_arg(p)
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    root = args.run_root or Path(tempfile.mkdtemp(prefix="tunix-rt-rehearsal-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for v in variants:
        w = run_once(v, root / v.replace("+", "_"))
        print(f"warm-up {v}: {w['wall_s']:.1f} s", flush=True)
    for i in range(args.repeat):
        for v in variants:
            r = run_once(v, root / v.replace("+", "_"))
            runs[v].append(r)
            print(f"round {i + 1} {v}: {r['wall_s']:.1f} s (train_jax total {r['train_total_s']:.1f} s)",
                  flush=True)
    med = {v: {ph: median(r["phases"][ph] for r in rs) for ph in PHASES} for v, rs in runs.items()}
    walls = {v: median(r["wall_s"] for r in rs) for v, rs in runs.items()}
    rows = [(ph, *(med[v][ph] for v in variants)) for ph in PHASES]
    rows.append(("TOTAL wall (median)", *(walls[v] for v in variants)))
    print()
    print(table(["phase (median s)", *variants], rows))
    figures: dict[str, Any] = {"wall_median_s": walls, "phases_median_s": med, "runs": runs}
    goals = {}
    if "local" in walls:
        goals["local_le_20s"] = walls["local"] <= GOAL_LOCAL_S
    if "local" in runs and "docker" in runs:
        diffs = [d["wall_s"] - loc["wall_s"] for loc, d in zip(runs["local"], runs["docker"], strict=True)]
        figures["docker_minus_local_median_s"] = median(diffs)
        figures["docker_over_local_ratio"] = walls["docker"] / walls["local"]
        goals["docker_le_local_plus_2s"] = (median(diffs) or 0.0) <= GOAL_DOCKER_EXTRA_S
        print(f"docker - local (median of per-round differences): {median(diffs):+.1f} s, "
              f"ratio {walls['docker'] / walls['local']:.2f}")
    for name, met in goals.items():
        print(f"goal {name}: {'met' if met else 'MISSED'}")
    path = write_result(args.out, "rehearsal", {"repeat": args.repeat, "variants": variants, "goals": goals,
                                                "figures": figures, "run_root": str(root)})
    print(f"result: {path}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
