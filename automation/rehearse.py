"""Rehearse a run locally: bundle → runner (Docker or a subprocess) → evidence → validation.

The runner executes the very notebook bytes ``tunix-rt bundle`` builds (and ``push`` would send), in Kaggle's
layout, then :func:`tunix_rt.evidence.fill_evidence` writes the evidence from the kernel's own outputs and
:func:`tunix_rt.validate.validate_run_dir` checks it. A failed notebook still gets its evidence (saying
``failed``) before the command exits with ``EXIT_KERNEL_FAILED``.

``--backend auto`` picks Docker when a daemon answers; when that daemon cannot build or start the kernel
image (no registry for the base image, say) it says why in one line, naming the daemon, and rehearses with
the local runner instead. An explicit ``--backend docker`` never falls back: the same failure exits 1.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import runstate
from .bundle import BundleInfo, build_bundle
from .errors import EXIT_KERNEL_FAILED, EXIT_USAGE, TunixRtError
from .evidence import EVIDENCE_FILES, fill_evidence
from .fsutil import read_json
from .run_report import write_report
from .runners import RunOutcome
from .runners.docker import DockerSetupError, docker_available, docker_host

BACKENDS = ("auto", "docker", "local")
ACCELERATOR = "cpu"  # a rehearsal runs on this machine's CPU (Docker with --gpus aside, JAX reports that)


@dataclass(frozen=True)
class Rehearsal:
    """What one rehearsal did."""

    run_dir: Path
    backend: str
    bundle: BundleInfo
    outcome: RunOutcome
    evidence: tuple[Path, ...]


def choose_backend(backend: str, stream: TextIO | None = sys.stdout) -> str:
    """``auto`` → ``docker`` when a Docker daemon answers (and the SDK is installed), else ``local``."""
    if backend not in BACKENDS:
        raise TunixRtError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}", EXIT_USAGE)
    if backend != "auto":
        _say(stream, f"backend: {backend}")
        return backend
    available = docker_available()  # False too without the docker SDK (the `docker` extra)
    chosen = "docker" if available else "local"
    why = "a Docker daemon answered" if available else "no Docker daemon answered"
    _say(stream, f"backend: {chosen} (auto: {why} at {docker_host()})")
    return chosen


@dataclass(frozen=True)
class RunnerOptions:
    """How the runner runs the notebook (the Docker fields apply to the docker backend only)."""

    image: str | None = None  # an existing image tag; None builds (or reuses) the default image
    base_image: str | None = None  # FROM of that default image; None: $TUNIX_RT_BASE_IMAGE or the Dockerfile's
    network: str = "none"
    gpus: str | None = None  # all, a count or device=ID,…; None: no GPU
    jax_cache: str | None = None  # a folder or "off"; None: $TUNIX_RT_JAX_CACHE or ~/.cache/tunix-rt/jax


def _run(backend: str, bundle: BundleInfo, run_dir: Path, options: RunnerOptions,
         stream: TextIO | None) -> RunOutcome:
    if backend == "docker":
        from .runners.docker import run_docker

        return run_docker(bundle.bundle_dir, run_dir, image=options.image, base_image=options.base_image,
                          network=options.network, gpus=options.gpus, jax_cache=options.jax_cache, stream=stream)
    from .runners.local import run_local

    return run_local(bundle.bundle_dir, run_dir, jax_cache=options.jax_cache, stream=stream)


def _clear_previous_run(run_dir: Path) -> None:
    """A rerun must not read the last run's outputs as its own: drop outputs/ and raw_log/ (not committed)."""
    for name in (runstate.OUTPUTS_DIR, runstate.RAW_LOG_DIR):
        folder = run_dir / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)


def rehearse(
    run_dir: Path,
    *,
    backend: str = "auto",
    mode: str = "smoke",
    config: str | Path | None = None,
    dataset: str | None = None,
    eval_set: str | Path | None = None,
    options: RunnerOptions | None = None,
    command: str | None = None,
    stream: TextIO | None = sys.stdout,
) -> Rehearsal:
    """Bundle, run, fill evidence and validate; returns the rehearsal or raises TunixRtError
    (EXIT_KERNEL_FAILED when the notebook failed or Docker could not run it, EXIT_USAGE for bad inputs or
    invalid evidence)."""
    from .validate import validate_run_dir

    options = options or RunnerOptions()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    chosen = choose_backend(backend, stream)
    if chosen == "local" and (options.image or options.base_image or options.gpus or options.network != "none"):
        _say(stream, "note: --image, --base-image, --network and --gpus apply to the docker backend only; ignored")
    bundle = build_bundle(run_dir, mode=mode, config=config, dataset=dataset, eval_set=eval_set,
                          accelerator=ACCELERATOR)
    _say(stream, f"bundle: {bundle.notebook_path} ({bundle.size_bytes:,} bytes, sha256 {bundle.sha256})")
    _clear_previous_run(run_dir)
    runstate.update(run_dir, platform=chosen, accelerator=ACCELERATOR, command=command,
                    raw_log=f"{runstate.RAW_LOG_DIR}/console.log")
    runstate.mark_stage(run_dir, "rehearse", "running", backend=chosen)

    try:
        try:
            outcome = _run(chosen, bundle, run_dir, options, stream)
        except DockerSetupError as exc:
            if backend != "auto":
                raise
            # auto promised a rehearsal, not Docker: say why in one line and run the same bundle locally.
            _say(stream, f"backend: local (auto: falling back, {exc.message})")
            chosen = "local"
            _clear_previous_run(run_dir)
            runstate.update(run_dir, platform=chosen)
            runstate.mark_stage(run_dir, "rehearse", "running", backend=chosen, fallback_from="docker")
            outcome = _run(chosen, bundle, run_dir, options, stream)
    except (TunixRtError, KeyboardInterrupt) as exc:  # no daemon, no image, Ctrl-C: the run never finished
        reason = exc.message if isinstance(exc, TunixRtError) else "interrupted"
        runstate.mark_stage(run_dir, "rehearse", "failed", backend=chosen, detail=reason)
        raise
    runstate.update(run_dir, raw_log=outcome.log_path.relative_to(run_dir).as_posix())
    runstate.mark_stage(run_dir, "rehearse", "done" if outcome.ok else "failed", backend=chosen,
                        exit_code=outcome.exit_code, wall_s=round(outcome.wall_s, 1), detail=outcome.detail)

    failure = None if outcome.ok else f"{chosen} rehearsal failed: {outcome.detail}"
    try:
        evidence = fill_evidence(run_dir, failure=failure)
    except TunixRtError as exc:
        if outcome.ok:
            raise
        _say(stream, f"evidence: not written ({exc.message})")
    else:
        _say(stream, f"evidence: {evidence.status}" + (f" ({evidence.failure_message})" if failure else ""))
        report = write_report(run_dir)  # report.html + loss.png, from the evidence and outputs just written
        _say(stream, f"report: {report.html} ({report.html_bytes:,} bytes) and {report.png.name}")
    if not outcome.ok:
        raise TunixRtError(f"the notebook failed on {chosen} ({outcome.detail}); log: {outcome.log_path}",
                           EXIT_KERNEL_FAILED)

    problems = validate_run_dir(run_dir)
    for problem in problems:
        _say(stream, f"invalid: {problem}")
    runstate.mark_stage(run_dir, "validate", "failed" if problems else "done", problems=len(problems))
    if problems:
        raise TunixRtError(f"{run_dir}: evidence failed validation ({len(problems)} problem(s) above)",
                           EXIT_USAGE)
    return Rehearsal(run_dir, chosen, bundle, outcome, tuple(run_dir / name for name in EVIDENCE_FILES))


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


def _say(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()
