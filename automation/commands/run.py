"""``tunix-rt run``: preflight → bundle → push → wait → pull → evidence → validate → package, resumable from
run_state.json (a stage recorded done is skipped; a pushed run is never pushed again). ``--follow`` prints
the kernel's log as Kaggle streams it while the wait stage runs, under a live training panel."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import keep_evidence, rundir_lock
from ..engine import Context, run_flow
from ..errors import EXIT_KERNEL_FAILED, EXIT_OK, TunixRtError
from ..progress import Reporter
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
        runner = kaggle_runner(reporter, push=push_options(args), wait=wait_options(args), stream=True)
        state = RunState.read(run_dir)
        if state.kaggle is None or not (state.kaggle.pushed or state.kaggle.push_attempt):  # a fresh run
            keep_evidence.check(run_dir, "run", force=args.force)
        stages = flow_stages(runner, inputs, package_to=Path(args.output))
        with reporter:  # --follow: the live display runs while the flow does
            flow = run_flow(stages, Context(state, reporter, resume=True))
        if flow.exit_code not in (EXIT_OK, EXIT_KERNEL_FAILED):
            raise TunixRtError(flow.error or "the run stopped", flow.exit_code)
        package = state.stage("package")
        zip_path = package.details.get("zip") if package is not None and flow.exit_code == EXIT_OK else None
        reporter.result(flow.exit_code, version_line(state) + (f"; submission zip {zip_path}" if zip_path else ""),
                        **kaggle_fields(state), zip=zip_path,
                        **({"error": flow.error} if flow.exit_code and flow.error else {}))
        return flow.exit_code

    return reporter.run(rundir_lock.locked(run_dir, "run", body))
