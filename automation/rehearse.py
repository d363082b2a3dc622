"""Rehearse a run locally: the one flow (stages.py) with a process runner — bundle → execute → evidence →
validate.

The runner executes the very notebook bytes ``tunix-rt bundle`` builds (and ``push`` would send), in Kaggle's
layout, then the evidence is written from the kernel's own outputs and checked. A failed notebook still gets
its evidence (saying ``failed``) and its report before the command exits with ``EXIT_KERNEL_FAILED``.

``--backend auto`` picks Docker when a daemon answers; when that daemon cannot build or start the kernel
image (no registry for the base image, say) it says why in one line, naming the daemon, and rehearses with
the local runner instead (runners ``AutoRunner``). An explicit ``--backend docker`` never falls back: the same
failure exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .bundle import BundleInfo, BundleInputs
from .engine import Context, run_flow
from .errors import EXIT_USAGE, TunixRtError
from .evidence import EVIDENCE_FILES
from .fsutil import read_json
from .progress import Reporter
from .runners import BACKENDS, AutoRunner, ProcessRunner, RunnerOptions, RunOutcome, process_runner
from .runstate import RunState
from .stages import flow_stages

ACCELERATOR = "cpu"  # a rehearsal runs on this machine's CPU (Docker with --gpus aside, JAX reports that)


@dataclass(frozen=True)
class Rehearsal:
    """What one rehearsal did."""

    run_dir: Path
    backend: str
    bundle: BundleInfo
    outcome: RunOutcome
    evidence: tuple[Path, ...]


def backend_choice(backend: str) -> tuple[str, str]:
    """``auto`` → ``docker`` when a Docker daemon answers (and the SDK is installed), else ``local``; returns
    the backend and the line that says so."""
    if backend not in BACKENDS:
        raise TunixRtError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}", EXIT_USAGE)
    if backend != "auto":
        return backend, f"backend: {backend}"
    from .runners.docker import docker_available, docker_host  # False too without the docker SDK

    available = docker_available()
    chosen = "docker" if available else "local"
    why = "a Docker daemon answered" if available else "no Docker daemon answered"
    return chosen, f"backend: {chosen} (auto: {why} at {docker_host()})"


def rehearse(run_dir: Path, inputs: BundleInputs, reporter: Reporter, *, backend: str = "auto",
             options: RunnerOptions | None = None, command: str | None = None) -> Rehearsal:
    """Bundle, run, fill evidence and validate; returns the rehearsal or raises TunixRtError
    (EXIT_KERNEL_FAILED when the notebook failed or Docker could not run it, EXIT_USAGE for bad inputs or
    invalid evidence)."""
    options = options or RunnerOptions()
    run_dir = Path(run_dir).resolve()
    chosen, line = backend_choice(backend)
    reporter.event("backend", line, backend=chosen)
    if chosen == "local" and options.docker_only:
        reporter.event("note", "note: --image, --base-image, --network and --gpus apply to the docker backend "
                       "only; ignored")
    if backend == "auto" and chosen == "docker":
        runner: ProcessRunner = AutoRunner(options, say=lambda text: reporter.event("backend", text, backend="local"))
    else:
        runner = process_runner(chosen, options)
    state = RunState.read(run_dir)
    state.command, state.accelerator = command, ACCELERATOR
    inputs = replace(inputs, kernel_id=None, accelerator=ACCELERATOR, folder=None)  # a rehearsal never reaches Kaggle
    flow = run_flow(flow_stages(runner, inputs), Context(state, reporter))
    if flow.exit_code:
        raise TunixRtError(flow.error or "the rehearsal failed", flow.exit_code)
    outcome: RunOutcome = flow.values["execute"]
    return Rehearsal(run_dir, outcome.backend, flow.values["bundle"], outcome,
                     tuple(run_dir / name for name in EVIDENCE_FILES))


def summary_lines(rehearsal: Rehearsal) -> list[str]:
    """The human summary: backend, wall time, bundle, model, scores and evidence paths."""
    run_dir = rehearsal.run_dir
    manifest: dict[str, Any] = read_json(rehearsal.evidence[0])
    summary: dict[str, Any] = read_json(rehearsal.evidence[1])
    metrics = summary.get("metrics") or {}
    training = manifest.get("training") or {}

    def num(value: Any, fmt: str = ".3f") -> str:
        return "n/a" if value is None else format(value, fmt)

    lines = [
        f"rehearsal {run_dir.name}: {manifest.get('status')}",
        f"  backend        {rehearsal.backend} ({rehearsal.outcome.detail})",
        f"  wall time      {rehearsal.outcome.wall_s:.1f} s",
        f"  bundle         sha256 {rehearsal.bundle.sha256} ({rehearsal.bundle.size_bytes:,} bytes)",
        f"  model          {manifest.get('model_id')} ({manifest.get('mode')}, "
        f"{training.get('steps')} steps, loss {num(training.get('first_loss'), '.4f')} -> "
        f"{num(training.get('final_loss'), '.4f')})",
        f"  scores         answer_correctness {num(metrics.get('answer_correctness'))}, "
        f"format_compliance {num(metrics.get('format_compliance'))} on {summary.get('n_items')} items",
        "  evidence       " + ", ".join(str(p) for p in rehearsal.evidence),
    ]
    return lines
