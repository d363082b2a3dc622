"""``tunix-rt run``: push → wait → pull → evidence → validate → package, each stage resumable.

Every stage records itself in run_state.json ``stages`` when it is done, and a stage marked done is
skipped on the next run: rerunning the same command after a crash, Ctrl-C, a timeout (exit 3) or an API
failure (exit 5) continues where it stopped — and never pushes a second version (push.py).

A kernel that ended in ERROR or was cancelled still gets pull and evidence (which say so, log kept); the
run then stops with exit 1 (no validate/package: there is nothing to submit).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import runstate
from .errors import EXIT_KERNEL_FAILED, EXIT_OK, EXIT_USAGE, TunixRtError
from .kaggle_client import KaggleClient
from .progress import Reporter
from .pull import download_outputs, fill_evidence
from .push import PushOptions, push
from .wait import WaitOptions, wait


def _skip(reporter: Reporter, stage: str, detail: str = "") -> None:
    reporter.event("stage_skipped", f"{stage}: already done{detail}; skipping", stage=stage)


def validate_stage(run_dir: Path, reporter: Reporter) -> None:
    """Check the evidence with the project's validator; problems → exit 2."""
    from .validate import validate_run_dir

    problems = validate_run_dir(run_dir)
    if problems:
        runstate.mark_stage(run_dir, "validate", "failed", problems=[str(p) for p in problems[:20]])
        raise TunixRtError(f"{run_dir}: evidence does not validate: " + "; ".join(map(str, problems[:3]))
                           + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""), EXIT_USAGE)
    runstate.mark_stage(run_dir, "validate", "done")
    reporter.event("validated", "evidence validates", stage="validate")


def package_stage(run_dir: Path, output: Path, reporter: Reporter) -> str:
    """Write the deterministic submission zip; returns its path."""
    from .package import package

    zip_path = str(package(run_dir, output).path)
    runstate.mark_stage(run_dir, "package", "done", zip=zip_path)
    reporter.event("packaged", f"submission zip: {zip_path}", stage="package", zip=zip_path)
    return zip_path


def run_pipeline(run_dir: Path, popts: PushOptions, wopts: WaitOptions, output: Path, reporter: Reporter,
                 client_factory: Callable[[], KaggleClient],
                 stream_factory: Callable[[], KaggleClient] | None = None) -> int:
    """The whole Kaggle run; returns 0 or 1, raises :class:`TunixRtError` (2/3/4/5) otherwise."""
    run_dir = Path(run_dir)
    state = runstate.load(run_dir)
    if runstate.stage_done(state, "push"):
        _skip(reporter, "push", f" (v{(state.get('kaggle') or {}).get('version_number')})")
    push(run_dir, popts, client_factory, reporter)  # returns at once when this run already pushed

    state = runstate.load(run_dir)
    if runstate.stage_done(state, "wait"):
        _skip(reporter, "wait", f" ({state['kaggle'].get('status')})")
    else:
        wait(run_dir, wopts, client_factory, reporter, stream_factory)

    state = runstate.load(run_dir)
    if runstate.stage_done(state, "pull"):
        _skip(reporter, "pull")
    else:
        download_outputs(run_dir, client_factory(), reporter)

    state = runstate.load(run_dir)
    if runstate.stage_done(state, "evidence"):
        _skip(reporter, "evidence")
    else:
        fill_evidence(run_dir, reporter)

    state = runstate.load(run_dir)
    kaggle: dict[str, Any] = state.get("kaggle") or {}
    evidence_status = state.get("stages", {}).get("evidence", {}).get("evidence_status")
    if kaggle.get("status") != "COMPLETE" or evidence_status != "complete":
        return EXIT_KERNEL_FAILED  # evidence says why; nothing to validate or submit

    if runstate.stage_done(state, "validate"):
        _skip(reporter, "validate")
    else:
        validate_stage(run_dir, reporter)

    state = runstate.load(run_dir)
    if runstate.stage_done(state, "package"):
        _skip(reporter, "package", f" ({state['stages']['package'].get('zip')})")
    else:
        package_stage(run_dir, output, reporter)
    return EXIT_OK
