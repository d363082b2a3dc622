"""``tunix-rt pull``: download the pushed version's outputs and log, fill evidence (pull → evidence)."""

from __future__ import annotations

import argparse

from .. import rundir_lock
from ..engine import Context, run_flow
from ..layout import OUTPUTS_DIR
from ..progress import Reporter
from ..runners.kaggle import PullStage
from ..runstate import RunState
from ..stages import EvidenceStage
from .kaggle_args import kaggle_fields, kaggle_runner, run_dir_of


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("pull", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        state = RunState.read(run_dir)
        flow = run_flow([PullStage(kaggle_runner(reporter)), EvidenceStage()], Context(state, reporter))
        evidence = state.stage("evidence")
        status = evidence.details.get("evidence_status") if evidence else None
        reporter.result(flow.exit_code, f"outputs in {run_dir / OUTPUTS_DIR}; evidence {status}",
                        **kaggle_fields(state))
        return flow.exit_code

    return reporter.run(rundir_lock.locked(run_dir, "pull", body))
