"""``tunix-rt sweep``: a grid of configs as concurrent Kaggle kernels (sweep.py), then one comparison
(sweep_compare.py). Resumable: the same command again picks up where the last one stopped."""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

from .. import kernel_id, knobs, paths, rundir_lock
from ..errors import EXIT_OK, EXIT_USAGE, TunixRtError
from ..progress import Reporter
from ..push import PUSH_SETTLE_S, PushOptions
from ..sweep import Scheduler, SweepOptions
from ..sweep_compare import write_comparison
from ..sweep_grid import parse_set
from ..sweep_plan import make_plan, write_plan
from ..wait import WaitOptions
from .kaggle_args import kaggle_runner


def sweep_dir_of(args: argparse.Namespace) -> Path:
    """``--run-dir`` or submission_runs/sweep-<slug prefix>. The sweep folder and every point's run directory
    are locked for the whole command (rundir_lock.py): a second sweep or run on them exits 2 at once."""
    if args.run_dir:
        return Path(args.run_dir)
    return paths.submission_runs_dir() / f"sweep-{kernel_id.slug_of(args.kernel_id)}"


def run(args: argparse.Namespace) -> int:
    reporter = Reporter("sweep", json_mode=args.json)
    sweep_dir = sweep_dir_of(args)

    def body() -> int:
        if args.max_concurrent < 1:
            raise TunixRtError("--max-concurrent must be at least 1", EXIT_USAGE)
        if args.timeout is not None and args.timeout <= 0:
            raise TunixRtError("--timeout must be a positive number of seconds", EXIT_USAGE)
        prefix = kernel_id.check(args.kernel_id)
        axes = [parse_set(text) for text in args.set]
        wait = WaitOptions.from_args(None, args.poll_min, args.poll_max, None, args.log_stream)
        settle = knobs.number(knobs.PUSH_SETTLE, PUSH_SETTLE_S) if args.push_settle is None else args.push_settle
        if not math.isfinite(settle) or settle < 0:
            raise TunixRtError(f"--push-settle {settle!r}: expected a finite number of seconds, 0 or more")
        push = PushOptions(settle_s=settle)
        plan = make_plan(sweep_dir, kernel_prefix=prefix, accelerator=args.accelerator, mode=args.mode,
                         config=args.config, axes=axes, reporter=reporter)
        write_plan(plan)  # everything was checked: from here on the sweep folder holds the plan
        runner = kaggle_runner(reporter, push=push, wait=wait, stream=True)
        options = SweepOptions(args.max_concurrent, args.timeout, wait, Path(args.output))
        try:
            with contextlib.ExitStack() as points:  # each point's run directory is this command's alone too
                for point in plan.points:
                    points.enter_context(rundir_lock.hold(point.run_dir, "sweep"))
                outcome = Scheduler(plan, runner, reporter, options).run()
        finally:
            try:
                comparison = write_comparison(plan.sweep_dir, [p.id for p in plan.points])
            except (OSError, ValueError, TunixRtError) as exc:  # the runs' own files stay as they are
                reporter.warn(f"comparison not written: {exc}")
                comparison = None
        lines = [outcome.message]
        if comparison is not None:
            lines += [f"{r['rank']}. {r['point']} {r['status']}: answer_correctness {r['answer_correctness']}"
                      f" ({', '.join(f'{k}={v}' for k, v in r['settings'].items())})"
                      + (f"; {r['zip']}" if r["zip"] else "") for r in comparison.rows]
            lines.append(f"comparison: {comparison.html_path}")
        reporter.result(outcome.exit_code, "\n".join(lines), sweep_dir=str(plan.sweep_dir),
                        comparison=str(comparison.json_path) if comparison else None,
                        rows=comparison.rows if comparison else [], api_calls=outcome.api_calls,
                        pushes=outcome.pushes, landed=outcome.landed, refusals=outcome.refusals,
                        **({"error": outcome.message} if outcome.exit_code != EXIT_OK else {}))
        return outcome.exit_code

    return reporter.run(rundir_lock.locked(sweep_dir, "sweep", body))
