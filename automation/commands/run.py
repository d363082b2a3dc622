"""``tunix-rt run``: push → wait → pull → evidence → validate → package, resumable from run_state.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import runstate
from ..pipeline import run_pipeline
from ..progress import Reporter
from .kaggle_args import client_factory, push_options, reported, run_dir_of, stream_factory, wait_options


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("run", json_mode=args.json)
    run_dir = run_dir_of(args)

    def body() -> int:
        code = run_pipeline(run_dir, push_options(args), wait_options(args), Path(args.output), reporter,
                            client_factory(reporter), stream_factory(reporter))
        state = runstate.load(run_dir)
        kaggle = state.get("kaggle") or {}
        zip_path = state.get("stages", {}).get("package", {}).get("zip")
        message = (f"{kaggle.get('kernel_ref')} v{kaggle.get('version_number')}: {kaggle.get('status')}"
                   + (f"; submission zip {zip_path}" if code == 0 and zip_path else ""))
        reporter.result(code, message, run_dir=str(run_dir), kaggle=kaggle,
                        zip=zip_path if code == 0 else None)
        return code

    return reported(reporter, body)
