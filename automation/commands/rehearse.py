"""``tunix-rt rehearse``: run the bundle's notebook locally (Docker or a subprocess) and fill its evidence.

``--follow`` shows a live training panel above the console lines; ``--json`` prints the console as JSON
events (:mod:`tunix_rt.follow`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TextIO

from .. import paths
from ..errors import TunixRtError
from ..follow import Follower
from ..fsutil import read_json
from ..rehearse import Rehearsal, RunnerOptions, rehearse, summary_lines
from ..run_report import REPORT_FILES


def portable(path: str, *, input_file: bool = False) -> str:
    """A path for the evidence: project-relative inside the checkout, else ``.../<name>`` (evidence never
    carries this machine's folders). An ``input_file`` that is not under the current folder is looked up from
    the checkout root, as ``tunix-rt bundle`` does."""
    given = Path(path).expanduser()
    if input_file and not given.is_absolute() and not given.exists():
        given = paths.project_root() / given
    resolved = given.resolve()
    try:
        return resolved.relative_to(paths.project_root()).as_posix()
    except ValueError:
        return f".../{resolved.name}"


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (paths as :func:`portable` shows them), for run_manifest.json.
    ``--jax-cache`` is left out: it changes no result, and its folder is this machine's."""
    parts = ["tunix-rt", "rehearse", "--backend", args.backend, "--mode", args.mode]
    for flag, value in (("--run-dir", args.run_dir), ("--config", args.config), ("--dataset", args.dataset),
                        ("--eval-set", args.eval_set), ("--image", args.image), ("--base-image", args.base_image)):
        if value is not None:
            if flag in ("--run-dir", "--config", "--eval-set"):
                value = portable(value, input_file=flag != "--run-dir")
            parts += [flag, str(value)]
    if args.network != "none":
        parts += ["--network", args.network]
    if args.gpus:
        parts += ["--gpus", args.gpus]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else paths.default_run_dir(paths.DEFAULT_REHEARSAL_RUN)
    if not (args.follow or args.json):
        result = _rehearse(args, run_dir, sys.stdout)  # looked up now: the default is bound at import time
        print("\n".join(summary_lines(result)))
        return 0
    # --follow / --json: the runner's console goes through the follower (panel + log lines, or events).
    follower = Follower.for_terminal(json_mode=args.json, command="rehearse")
    try:
        with follower:
            result = _rehearse(args, run_dir, follower.sink)
    except TunixRtError as exc:
        follower.result(exc.exit_code, error=exc.message, run_dir=str(run_dir.resolve()))
        raise
    lines = summary_lines(result)
    if args.json:
        manifest = read_json(result.evidence[0])
        follower.result(0, message=lines[0], run_dir=str(result.run_dir), backend=result.backend,
                        status=manifest.get("status"), evidence=[str(p) for p in result.evidence],
                        report=[str(result.run_dir / name) for name in REPORT_FILES])
    else:
        print("\n".join(lines))
    return 0


def _rehearse(args: argparse.Namespace, run_dir: Path, stream: TextIO) -> Rehearsal:
    return rehearse(
        run_dir,
        backend=args.backend,
        mode=args.mode,
        config=args.config,
        dataset=args.dataset,
        eval_set=args.eval_set,
        options=RunnerOptions(image=args.image, base_image=args.base_image, network=args.network, gpus=args.gpus,
                              jax_cache=args.jax_cache),
        command=command_line(args),
        stream=stream,
    )
