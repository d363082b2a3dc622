"""``tunix-rt run``: preflight → bundle → push → wait → pull → evidence → validate → package, resumable from
run_state.json (a stage recorded done is skipped; a pushed run is never pushed again). ``--follow`` prints
the kernel's log as Kaggle streams it while the wait stage runs, under a live training panel. ``--sessions
N``: a chain of sessions (chain.py), each one such run in ``DIR/s<k>/``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .. import keep_evidence, rundir_lock
from ..bundle import BundleInputs
from ..chain import ChainPlan, run_chain
from ..engine import Context, run_flow
from ..errors import EXIT_KERNEL_FAILED, EXIT_OK, EXIT_USAGE, TunixRtError
from ..evidence import CUT_FOR_TIME
from ..input_checks import output_arg
from ..layout import CHAIN_FILE
from ..progress import Reporter
from ..push import DEFAULT_SESSION_S, resolve_accelerator
from ..runstate import RunState
from ..stages import flow_stages
from .kaggle_args import (
    bundle_inputs,
    kaggle_fields,
    kaggle_runner,
    push_options,
    run_dir_of,
    version_line,
    wait_options,
)


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("run", json_mode=args.json, follow=args.follow)
    run_dir = run_dir_of(args)

    def body() -> int:
        inputs = bundle_inputs(args)
        if args.sessions is not None:
            return _chain(args, inputs, run_dir, reporter)
        if args.resume_from and not args.bundle and inputs.mode != "full":
            raise TunixRtError("--resume-from needs --mode full: only a full run resumes a checkpoint", EXIT_USAGE)
        if (run_dir / CHAIN_FILE).exists():
            raise TunixRtError(f"{run_dir}: holds a chain of sessions ({CHAIN_FILE}); rerun it with --sessions",
                               EXIT_USAGE)
        runner = kaggle_runner(reporter, push=push_options(args), wait=wait_options(args), stream=True)
        state = RunState.read(run_dir)
        package_to = output_arg(args.output, run_dir)  # before any work: the zip never goes into the run dir
        if state.kaggle is None or not (state.kaggle.pushed or state.kaggle.push_attempt):  # a fresh run
            keep_evidence.check(run_dir, "run", force=args.force)
        stages = flow_stages(runner, inputs, package_to=package_to)
        with reporter:  # --follow: the live display runs while the flow does
            flow = run_flow(stages, Context(state, reporter, resume=True))
        if flow.exit_code not in (EXIT_OK, EXIT_KERNEL_FAILED):
            raise TunixRtError(flow.error or "the run stopped", flow.exit_code)
        package = state.stage("package")
        zip_path = package.details.get("zip") if package is not None and flow.exit_code == EXIT_OK else None
        evidence = state.stage("evidence")
        cut = evidence is not None and evidence.details.get("evidence_status") == CUT_FOR_TIME
        hint = (f"; cut for time: continue it with `tunix-rt run --resume-from {state.kaggle.kernel_ref} "
                "--kernel-id OTHER/SLUG --mode full …` (or `run --sessions N` next time)"
                if cut and state.kaggle is not None else "")
        reporter.result(flow.exit_code, version_line(state) + (f"; submission zip {zip_path}" if zip_path else hint),
                        **kaggle_fields(state), zip=zip_path,
                        **({"error": flow.error} if flow.exit_code and flow.error else {}))
        return flow.exit_code

    return reporter.run(rundir_lock.locked(run_dir, "run", body))


def _chain(args: argparse.Namespace, inputs: BundleInputs, run_dir: Path, reporter: Reporter) -> int:
    """``run --sessions N``: the session timeout (Kaggle's default for the accelerator when not given) is
    pushed and baked into every session, so each checkpoints before Kaggle stops it. The chain's folder is
    locked as a whole (the caller's rundir_lock), so its sessions' folders are not locked again."""
    push = push_options(args)
    timeout = push.session_timeout or DEFAULT_SESSION_S[resolve_accelerator(args.accelerator, reporter).kind]
    plan = ChainPlan(kernel_id=inputs.kernel_id or "", sessions=args.sessions, session_timeout_s=timeout,
                     resume_from=inputs.kernel_sources[0] if inputs.kernel_sources else None)
    runner = kaggle_runner(reporter, push=replace(push, session_timeout=timeout), wait=wait_options(args),
                           stream=True)
    with reporter:  # --follow: the live display runs while the sessions do
        result = run_chain(run_dir, plan, inputs, runner, output_arg(args.output, run_dir), reporter)
    last = result.sessions[-1] if result.sessions else {}
    message = (f"{run_dir / CHAIN_FILE}: {len(result.sessions)} session(s), step {last.get('end_step')} of "
               f"{last.get('max_steps')}" + (f"; submission zip {result.zip}" if result.zip else ""))
    if result.exit_code not in (EXIT_OK, EXIT_KERNEL_FAILED):
        raise TunixRtError(result.error or "the chain stopped", result.exit_code)
    reporter.result(result.exit_code, message, run_dir=str(run_dir), chain=str(run_dir / CHAIN_FILE),
                    sessions=result.sessions, zip=result.zip, finished=result.finished,
                    **({"error": result.error} if result.exit_code and result.error else {}))
    return result.exit_code
