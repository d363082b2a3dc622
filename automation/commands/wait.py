"""``tunix-rt wait``: poll the pushed version until it finishes (resumable)."""

from __future__ import annotations

import argparse

from .. import runstate
from ..progress import Reporter
from ..wait import wait
from .kaggle_args import client_factory, reported, run_dir_of, stream_factory, wait_options


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("wait", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        code = wait(run_dir, wait_options(args), client_factory(reporter), reporter, stream_factory(reporter))
        kaggle = runstate.load(run_dir).get("kaggle") or {}
        summary = f"{kaggle.get('kernel_ref')} v{kaggle.get('version_number')}: {kaggle.get('status')}"
        reporter.result(code, summary,
                        run_dir=str(run_dir), kaggle=kaggle)
        return code

    return reported(reporter, body)
