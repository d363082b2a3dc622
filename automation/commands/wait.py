"""``tunix-rt wait``: poll the pushed version until it finishes (resumable). ``--follow`` prints the kernel's
log as Kaggle streams it, under a live training panel (``--json``: log and metric events)."""

from __future__ import annotations

import argparse

from .. import rundir_lock
from ..engine import Context, run_flow
from ..progress import Reporter
from ..runners.kaggle import WaitStage
from ..runstate import RunState
from .kaggle_args import kaggle_fields, kaggle_runner, run_dir_of, version_line, wait_options


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("wait", json_mode=args.json, follow=args.follow)
    run_dir = run_dir_of(args)

    def body() -> int:
        runner = kaggle_runner(reporter, wait=wait_options(args), stream=True)
        state = RunState.read(run_dir)
        with reporter:  # --follow: the live display runs while the flow does
            flow = run_flow([WaitStage(runner)], Context(state, reporter))
        code = flow.values["wait"].exit_code
        reporter.result(code, version_line(state), **kaggle_fields(state))
        return code

    return reporter.run(rundir_lock.locked(run_dir, "wait", body))
