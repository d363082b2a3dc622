"""``tunix-rt rehearse``: run the bundle's notebook locally (Docker or a subprocess) and fill its evidence."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .. import paths
from ..rehearse import rehearse, summary_lines


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (the run dir project-relative), for run_manifest.json."""
    parts = ["tunix-rt", "rehearse", "--backend", args.backend, "--mode", args.mode]
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
        try:
            shown = run_dir.relative_to(paths.project_root()).as_posix()
        except ValueError:
            shown = str(run_dir)
        parts += ["--run-dir", shown]
    for flag, value in (("--config", args.config), ("--dataset", args.dataset), ("--eval-set", args.eval_set),
                        ("--image", args.image)):
        if value is not None:
            parts += [flag, str(value)]
    if args.network != "none":
        parts += ["--network", args.network]
    if args.gpus:
        parts.append("--gpus")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else paths.default_run_dir(paths.DEFAULT_REHEARSAL_RUN)
    result = rehearse(
        run_dir,
        backend=args.backend,
        mode=args.mode,
        config=args.config,
        dataset=args.dataset,
        eval_set=args.eval_set,
        image=args.image,
        network=args.network,
        gpus=args.gpus,
        command=command_line(args),
        stream=sys.stdout,  # looked up now: the default is bound at import time
    )
    print("\n".join(summary_lines(result)))
    return 0
