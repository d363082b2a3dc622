"""``tunix-rt push``: push the run's bundle to Kaggle, exactly once per run."""

from __future__ import annotations

import argparse

from ..progress import Reporter
from ..push import push
from .kaggle_args import client_factory, push_options, reported, run_dir_of


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("push", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        kaggle = push(run_dir, push_options(args), client_factory(reporter), reporter)
        reporter.result(0, f"{kaggle['kernel_ref']} v{kaggle['version_number']}: {kaggle.get('url')}",
                        run_dir=str(run_dir), kaggle=kaggle)
        return 0

    return reported(reporter, body)
