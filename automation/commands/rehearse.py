"""``tunix-rt rehearse``: run the bundle's notebook locally (Docker or a subprocess) and fill its evidence.

``--follow`` shows a live training panel above the console lines; ``--json`` prints the console as JSON
events (:mod:`tunix_rt.follow`), then a result.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .. import keep_evidence, paths, rundir_lock
from ..bundle import BundleInputs
from ..fsutil import read_json
from ..input_checks import run_dir_arg
from ..progress import Reporter
from ..rehearse import rehearse, summary_lines
from ..run_report import REPORT_FILES
from ..runners import RunnerOptions


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
    run_dir = run_dir_arg(args.run_dir, paths.DEFAULT_REHEARSAL_RUN)
    reporter = Reporter("rehearse", json_mode=args.json, follow=args.follow, to_stdout=True, kernel_console=True)
    inputs = BundleInputs(mode=args.mode, config=args.config, dataset=args.dataset, eval_set=args.eval_set)
    options = RunnerOptions(image=args.image, base_image=args.base_image, network=args.network, gpus=args.gpus,
                            jax_cache=args.jax_cache, memory=args.memory, pids_limit=args.pids_limit)

    def body() -> int:
        keep_evidence.check(run_dir, "rehearsal", force=args.force)
        with reporter:
            result = rehearse(run_dir, inputs, reporter, backend=args.backend, options=options,
                              command=command_line(args))
        lines = summary_lines(result)
        status = read_json(result.evidence[0]).get("status")
        reporter.result(0, lines[0] if args.json else "\n".join(lines), run_dir=str(result.run_dir),
                        backend=result.backend, status=status, evidence=[str(p) for p in result.evidence],
                        report=[str(result.run_dir / name) for name in REPORT_FILES])
        return 0

    return reporter.run(rundir_lock.locked(run_dir, "rehearse", body), run_dir=str(run_dir.resolve()))
