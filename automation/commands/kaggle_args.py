"""What the Kaggle verbs (push, wait, pull, run) share: typed options from their flags, the Kaggle runner, and
the result line they print."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import kernel_id, knobs, paths
from ..bundle import BundleInputs
from ..errors import TunixRtError
from ..input_checks import run_dir_arg
from ..kaggle_client import KaggleClient, connect
from ..progress import Reporter
from ..push import PUSH_SETTLE_S, PushOptions
from ..runners.kaggle import KaggleRunner
from ..runstate import RunState
from ..wait import WaitOptions

STREAM_READ_TIMEOUT_S = 900.0  # the log stream can be quiet for minutes while a model trains


def run_dir_of(args: argparse.Namespace) -> Path:
    """``--run-dir`` or submission_runs/m33_v1, checked before any work (input_checks.py); for wait and pull a
    missing one is left to the verb ("nothing pushed yet")."""
    return run_dir_arg(args.run_dir, paths.DEFAULT_KAGGLE_RUN,
                       must_exist=getattr(args, "command", None) in ("wait", "pull"))


def bundle_inputs(args: argparse.Namespace) -> BundleInputs:
    """The bundle to push; the kernel id is checked here, before any call and any file. The session timeout
    asked for is baked into a built notebook too (a full run checkpoints and stops before it); ``run
    --resume-from`` attaches that kernel's output (kernel_sources)."""
    resume_from = getattr(args, "resume_from", None)
    return BundleInputs(mode=args.mode, config=args.config, dataset=args.dataset, eval_set=args.eval_set,
                        kernel_id=kernel_id.check(args.kernel_id), accelerator=args.accelerator, folder=args.bundle,
                        is_private=not args.public, enable_internet=not args.no_internet,
                        session_timeout_s=args.session_timeout,
                        kernel_sources=(kernel_id.check(resume_from, "--resume-from"),) if resume_from else ())


def push_options(args: argparse.Namespace) -> PushOptions:
    if args.session_timeout is not None and args.session_timeout <= 0:
        raise TunixRtError("--session-timeout must be a positive number of seconds")
    settle = knobs.number(knobs.PUSH_SETTLE, PUSH_SETTLE_S) if args.push_settle is None else args.push_settle
    if not math.isfinite(settle) or settle < 0:
        raise TunixRtError(f"--push-settle {settle!r}: expected a finite number of seconds, 0 or more")
    return PushOptions(session_timeout=args.session_timeout, ignore_quota=args.ignore_quota, settle_s=settle)


def wait_options(args: argparse.Namespace) -> WaitOptions:
    """The wait flags; ``--follow`` reads the log stream, so it cannot go with ``--no-log-stream`` (it turns the
    stream on when only the environment turned it off)."""
    follow = bool(getattr(args, "follow", False))
    if follow and args.log_stream is False:
        raise TunixRtError("--follow shows the kernel's log stream: it cannot go with --no-log-stream")
    return WaitOptions.from_args(args.timeout, args.poll_min, args.poll_max, args.stale_grace,
                                 True if follow else args.log_stream)


def kaggle_runner(reporter: Reporter, *, push: PushOptions | None = None, wait: WaitOptions | None = None,
                  stream: bool = False) -> KaggleRunner:
    """The Kaggle runner; it connects on first use, so commands that skip every stage never touch the network.
    ``stream``: also the log-stream client (a long read timeout; the main client already checked the
    credentials, so this one does not again)."""
    stream_factory: Callable[[], KaggleClient] | None = None
    if stream:
        def stream_factory() -> KaggleClient:
            return connect(warn=reporter.warn, read_timeout_s=STREAM_READ_TIMEOUT_S, verify=False)
    return KaggleRunner(lambda: connect(warn=reporter.warn), stream_factory=stream_factory, push_options=push,
                        wait_options=wait)


def kaggle_fields(state: RunState) -> dict[str, Any]:
    """The result's ``run_dir`` and ``kaggle`` fields (the Kaggle record as run_state.json has it)."""
    return {"run_dir": str(state.run_dir), "kaggle": state.kaggle.to_dict() if state.kaggle else {}}


def version_line(state: RunState) -> str:
    """``owner/slug vN: STATUS``."""
    kaggle = state.kaggle
    if kaggle is None:
        return f"{state.run_dir}: nothing pushed"
    return f"{kaggle.kernel_ref} v{kaggle.version_number}: {kaggle.status}"
