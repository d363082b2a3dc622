"""``tunix-rt push``: push the run's bundle to Kaggle, exactly once per run (preflight → bundle → push)."""

from __future__ import annotations

import argparse

from .. import rundir_lock
from ..engine import Context, run_flow
from ..progress import Reporter
from ..runstate import RunState
from .kaggle_args import bundle_inputs, kaggle_fields, kaggle_runner, push_options, run_dir_of


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("push", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        inputs = bundle_inputs(args)
        runner = kaggle_runner(reporter, push=push_options(args))
        state = RunState.read(run_dir)
        run_flow(runner.push_stages(inputs), Context(state, reporter))
        kaggle = state.kaggle
        assert kaggle is not None and kaggle.pushed  # the push stage pushed, or skipped a pushed run
        reporter.result(0, f"{kaggle.label}: {kaggle.url}", **kaggle_fields(state))
        return 0

    return reporter.run(rundir_lock.locked(run_dir, "push", body))
