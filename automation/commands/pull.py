"""``tunix-rt pull``: download the pushed version's outputs and log, fill evidence."""

from __future__ import annotations

import argparse

from .. import runstate
from ..progress import Reporter
from ..pull import pull
from .kaggle_args import client_factory, reported, run_dir_of


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("pull", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        code = pull(run_dir, client_factory(reporter), reporter)
        state = runstate.load(run_dir)
        reporter.result(code, f"outputs in {run_dir / runstate.OUTPUTS_DIR}; evidence "
                        f"{state.get('stages', {}).get('evidence', {}).get('status')}", run_dir=str(run_dir),
                        kaggle=state.get("kaggle"))
        return code

    return reported(reporter, body)
