"""``tunix-rt bundle``: build the self-contained, pushable kernel folder ``<run-dir>/bundle/``."""

from __future__ import annotations

import argparse

from .. import paths, rundir_lock
from ..bundle import BundleInfo, BundleInputs
from ..engine import Context, run_flow
from ..input_checks import run_dir_arg
from ..progress import Reporter
from ..runstate import RunState
from ..stages import BundleStage


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("bundle", json_mode=args.json, to_stdout=True)
    run_dir = run_dir_arg(args.run_dir, paths.DEFAULT_REHEARSAL_RUN)
    inputs = BundleInputs(mode=args.mode, config=args.config, dataset=args.dataset, eval_set=args.eval_set,
                          kernel_id=args.kernel_id, accelerator=args.accelerator)

    def body() -> int:
        state = RunState.read(run_dir)
        flow = run_flow([BundleStage(inputs)], Context(state, reporter))
        info: BundleInfo = flow.values["bundle"]
        lines = [f"  kernel id   {info.kernel_id} ({info.accelerator}, mode {info.mode})",
                 f"  config      {info.config_path}; dataset {info.dataset}; eval set {info.eval_set}"]
        if info.model_sources:
            lines.append(f"  model       {', '.join(info.model_sources)}")
        lines.append(f"  payload     {len(info.payload_files)} files, sha256 {info.payload_sha256}")
        reporter.result(0, "\n".join(lines), run_dir=str(run_dir), **info.as_dict())
        return 0

    return reporter.run(rundir_lock.locked(run_dir, "bundle", body))
