"""``tunix-rt bundle``: build the self-contained, pushable kernel folder ``<run-dir>/bundle/``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import paths
from ..bundle import build_bundle


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else paths.default_run_dir(paths.DEFAULT_REHEARSAL_RUN)
    info = build_bundle(
        run_dir,
        mode=args.mode,
        config=args.config,
        dataset=args.dataset,
        eval_set=args.eval_set,
        kernel_id=args.kernel_id,
        accelerator=args.accelerator,
    )
    print(f"bundle: {info.bundle_dir}")
    print(f"  kernel id   {info.kernel_id} ({info.accelerator}, mode {info.mode})")
    print(f"  config      {info.config_path}; dataset {info.dataset}; eval set {info.eval_set}")
    if info.model_sources:
        print(f"  model       {', '.join(info.model_sources)}")
    print(f"  notebook    {info.size_bytes:,} bytes, sha256 {info.sha256}")
    print(f"  payload     {len(info.payload_files)} files, sha256 {info.payload_sha256}")
    return 0
