"""``tunix-rt run --sessions N``: a schedule longer than one Kaggle session, trained by a chain of kernels.

Kaggle stops a session at its timeout (9 h on GPU/TPU, 12 h on CPU, or the shorter one a push asks for:
kaggle-cli ``kernels push -t/--timeout`` → SaveKernel ``sessionTimeoutSeconds``, kagglesdk
``ApiSaveKernelRequest.session_timeout_seconds``). The timeout is also baked into the notebook, so the trainer
checkpoints before it and ends ``cut_for_time`` (training/session.py), and Kaggle keeps the output. A kernel
whose metadata names another in ``kernel_sources`` gets that kernel's latest output read-only under
``/kaggle/input/<slug>/`` (kaggle-cli docs/kernels_metadata.md; docs/kaggle-behaviour.md), where the notebook
finds ``output/checkpoint/`` and resumes (``--resume_from``).

A chain in ``DIR`` (``--run-dir``)::

    DIR/chain.json    the chain summary (see :func:`chain_document`), rewritten after every session
    DIR/s1/ … DIR/sN/ one run directory per session: each a whole ``tunix-rt run`` (run_state.json, bundle/,
                      outputs/, evidence run_manifest.json + eval_summary.json + kaggle_output_log.txt)

Session k is its own kernel ``<slug>-s<k>``, pushed once with the session timeout, its ``kernel_sources`` the
kernel of session k-1 (session 1: ``--resume-from OWNER/SLUG`` when given, else none). Each session runs the
one flow of ``run`` (engine.py: preflight → bundle → push → wait → pull → evidence → validate → package) in its
run directory and resumes like ``run`` does: a session already pushed is never pushed again, a stage recorded
done is skipped. A session cut for time gets evidence with status ``cut_for_time`` and no zip; the session
that finishes the schedule packages the one submission zip (the final model's evaluation) and the chain stops
there, however many sessions were asked for. After N sessions with the schedule unfinished the chain ends with
exit 3 (EXIT_TIMEOUT); the same command with a larger ``--sessions`` continues it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunix_rt.training import contract

from . import kernel_id as kernel_id_rule
from .bundle import BundleInputs
from .engine import Context, run_flow
from .errors import EXIT_KERNEL_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, TunixRtError
from .fsutil import read_json_object, write_json_atomic
from .kernel_status import FINISHED, KernelStatus
from .layout import CHAIN_FILE, OUTPUTS_DIR, STATE_FILE, TRAIN_OUTPUT_SUBDIR
from .progress import Reporter
from .runners.kaggle import KaggleRunner
from .runstate import RunState, utc_epoch
from .stages import flow_stages

CHAIN_SCHEMA_VERSION = 1
MAX_SESSIONS = 99  # a chain of 99 nine-hour sessions is ~37 days of training: a typo beyond that


@dataclass(frozen=True)
class ChainPlan:
    """What ``run --sessions`` was asked for: the kernel id the sessions' ids derive from, how many sessions at
    most, the session timeout (pushed and baked into every session's notebook) and the kernel session 1
    resumes (``--resume-from``)."""

    kernel_id: str
    sessions: int
    session_timeout_s: int
    resume_from: str | None = None

    def session_kernel_id(self, k: int) -> str:
        """``<owner>/<slug>-s<k>``; a slug that grows past Kaggle's limit is refused in one line."""
        return kernel_id_rule.check(f"{self.kernel_id}-s{k}", "--kernel-id (with its -s<k> session suffix)")

    def source_of(self, k: int) -> str | None:
        """The kernel whose output session ``k`` resumes: session k-1's, or ``--resume-from`` for session 1."""
        return self.session_kernel_id(k - 1) if k > 1 else self.resume_from


@dataclass(frozen=True)
class ChainResult:
    """How a chain ended: its exit code, the one line when not 0, the sessions run, and the zip when finished."""

    exit_code: int
    error: str | None
    sessions: list[dict[str, Any]]
    zip: str | None
    finished: bool


def session_dir(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / f"s{k}"


def check_plan(plan: ChainPlan, inputs: BundleInputs) -> None:
    """Refuse, before any call or file, a chain that cannot work (one line, exit 2)."""
    if not 1 <= plan.sessions <= MAX_SESSIONS:
        raise TunixRtError(f"--sessions {plan.sessions}: expected 1 to {MAX_SESSIONS}", EXIT_USAGE)
    if inputs.folder is None and inputs.mode != "full":
        raise TunixRtError("--sessions needs --mode full: only a full run checkpoints and resumes "
                           "(smoke runs never do)", EXIT_USAGE)
    for k in (1, plan.sessions):
        plan.session_kernel_id(k)
    if plan.resume_from is not None:
        kernel_id_rule.check(plan.resume_from, "--resume-from")


def check_chain_dir(run_dir: Path) -> None:
    """A chain lives in its own folder: one that holds a single run (its run_state.json) is refused."""
    if (Path(run_dir) / STATE_FILE).exists():
        raise TunixRtError(f"{run_dir}: holds a single run ({STATE_FILE}); use a new --run-dir for a chain of "
                           "sessions", EXIT_USAGE)


def run_chain(run_dir: Path, plan: ChainPlan, inputs: BundleInputs, runner: KaggleRunner, output: Path,
              reporter: Reporter) -> ChainResult:
    """Run (or resume) the chain in ``run_dir``: session after session until one finishes the schedule, one
    fails, or ``plan.sessions`` ran (see the module docstring). Writes ``chain.json`` after every session."""
    run_dir = Path(run_dir)
    check_plan(plan, inputs)
    check_chain_dir(run_dir)
    records: list[dict[str, Any]] = []
    for k in range(1, plan.sessions + 1):
        sdir = session_dir(run_dir, k)
        source = plan.source_of(k)
        state = RunState.read(sdir)
        _check_resumable(state, k)
        session_inputs = replace(inputs, kernel_id=plan.session_kernel_id(k), kernel_sources=(source,) if source
                                 else (), session_timeout_s=plan.session_timeout_s if inputs.folder is None else None)
        reporter.event("session", f"session {k} of at most {plan.sessions}: {session_inputs.kernel_id}"
                       + (f" (resumes {source})" if source else "") + f" in {sdir}",
                       session=k, kernel_ref=session_inputs.kernel_id, kernel_sources=[source] if source else [])
        sdir.mkdir(parents=True, exist_ok=True)
        flow = run_flow(flow_stages(runner, session_inputs, package_to=output), Context(state, reporter, resume=True))
        records.append(session_record(k, state, [source] if source else []))
        finished = records[-1]["status"] == "complete"
        zip_path = _zip_of(state) if finished and flow.exit_code == EXIT_OK else None
        write_chain(run_dir, plan, records, finished=finished, zip_path=zip_path)
        if flow.exit_code != EXIT_OK:
            return ChainResult(flow.exit_code, f"session {k} ({session_inputs.kernel_id}): {flow.error}", records,
                               None, False)
        if finished:
            reporter.event("chain_finished", f"the schedule finished in session {k} of {plan.sessions}",
                           session=k, end_step=records[-1]["end_step"])
            return ChainResult(EXIT_OK, None, records, zip_path, True)
        reporter.event("session_cut", f"session {k} was cut for time at step {records[-1]['end_step']} of "
                       f"{records[-1]['max_steps']}", session=k, end_step=records[-1]["end_step"])
    last = records[-1]
    return ChainResult(EXIT_TIMEOUT, f"the schedule is not finished after {plan.sessions} session(s) (step "
                       f"{last['end_step']} of {last['max_steps']}); run the same command with --sessions "
                       f"{plan.sessions + 1} or more to continue", records, None, False)


def _check_resumable(state: RunState, k: int) -> None:
    """A session whose kernel ended in ERROR or was cancelled cannot be resumed from (nothing was saved)."""
    kaggle = state.kaggle
    if kaggle is None or kaggle.status not in FINISHED:
        return
    if kaggle.status != KernelStatus.COMPLETE:
        raise TunixRtError(f"session {k} ({kaggle.label}) ended {kaggle.status}: the chain cannot go on from it; "
                           f"start a new --run-dir with --resume-from the last session that completed",
                           EXIT_KERNEL_FAILED)


def _zip_of(state: RunState) -> str | None:
    package = state.stage("package")
    return package.details.get("zip") if package is not None and package.done else None


def session_record(k: int, state: RunState, sources: list[str]) -> dict[str, Any]:
    """One session in chain.json: its kernel and version, how it ended, the steps it covered, its losses
    and wall time — every value read from the session's run state and its own run_result.json."""
    kaggle = state.kaggle
    evidence = state.stage("evidence")
    result = _run_result(state.run_dir)
    session = result.get("session") if isinstance(result.get("session"), dict) else {}
    training = result.get("training") if isinstance(result.get("training"), dict) else {}
    timings = result.get("timings_s") if isinstance(result.get("timings_s"), dict) else {}
    resumed = session.get("resumed_from") if isinstance(session.get("resumed_from"), dict) else None
    start, end = session.get("start_step"), session.get("end_step")
    status = evidence.details.get("evidence_status") if evidence is not None else None
    return {
        "session": k,
        "run_dir": state.run_dir.name,
        "kernel_ref": kaggle.kernel_ref if kaggle else None,
        "version_number": kaggle.version_number if kaggle else None,
        "url": kaggle.url if kaggle else None,
        "kernel_sources": sources,
        "kaggle_status": str(kaggle.status) if kaggle and kaggle.status else None,
        "status": status,  # the session's evidence: complete | cut_for_time | failed | None (not that far)
        "stop_reason": session.get("stop_reason"),
        "resumed_from_step": resumed.get("step") if resumed else None,
        "start_step": start,
        "end_step": end,
        "steps": end - start if isinstance(start, int) and isinstance(end, int) else None,
        "max_steps": training.get("max_steps"),
        "first_loss": training.get("first_loss"),
        "final_loss": training.get("final_loss"),
        "pushed_at": kaggle.pushed_at if kaggle else None,
        "finished_at": kaggle.finished_at if kaggle else None,
        "wall_s": _wall_s(kaggle.pushed_at, kaggle.finished_at) if kaggle else None,
        "kernel_wall_s": timings.get("total"),
    }


def _run_result(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / OUTPUTS_DIR / TRAIN_OUTPUT_SUBDIR / contract.RUN_RESULT
    return read_json_object(path) or {}


def _wall_s(pushed_at: str | None, finished_at: str | None) -> float | None:
    """Push to finish, as Kaggle's times say (queueing included: what the session cost in waiting)."""
    start, end = utc_epoch(pushed_at), utc_epoch(finished_at)
    return None if start is None or end is None else end - start


def chain_document(plan: ChainPlan, records: list[dict[str, Any]], *, finished: bool,
                   zip_path: str | None) -> dict[str, Any]:
    """chain.json: the plan, one record per session run so far (:func:`session_record`), the steps the
    sessions covered, and, once a session finished the schedule, the final session and its zip."""
    steps = [r["steps"] for r in records if isinstance(r.get("steps"), int)]
    last = records[-1] if records else {}
    return {
        "schema_version": CHAIN_SCHEMA_VERSION,
        "kernel_id": plan.kernel_id,
        "sessions_asked": plan.sessions,
        "session_timeout_s": plan.session_timeout_s,
        "resume_from": plan.resume_from,
        "finished": finished,
        "final_session": last.get("session") if finished else None,
        "max_steps": last.get("max_steps"),
        "end_step": last.get("end_step"),
        "steps_trained": sum(steps),
        "final_loss": last.get("final_loss") if finished else None,
        "zip": Path(zip_path).name if zip_path else None,
        "sessions": records,
    }


def write_chain(run_dir: Path, plan: ChainPlan, records: list[dict[str, Any]], *, finished: bool,
                zip_path: str | None) -> Path:
    """Write ``DIR/chain.json`` atomically."""
    return write_json_atomic(Path(run_dir) / CHAIN_FILE,
                             chain_document(plan, records, finished=finished, zip_path=zip_path))

