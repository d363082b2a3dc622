"""What the Kaggle verbs (push, wait, pull, run) share: reading their flags and reporting the result."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .. import paths
from ..errors import TunixRtError
from ..kaggle_client import KaggleClient, connect
from ..progress import Reporter
from ..push import PushOptions
from ..wait import WaitOptions

STREAM_READ_TIMEOUT_S = 900.0  # the log stream can be quiet for minutes while a model trains


def run_dir_of(args: argparse.Namespace) -> Path:
    """``--run-dir`` or submission_runs/m33_v1."""
    return Path(args.run_dir) if args.run_dir else paths.default_run_dir(paths.DEFAULT_KAGGLE_RUN)


def push_options(args: argparse.Namespace) -> PushOptions:
    if args.session_timeout is not None and args.session_timeout <= 0:
        raise TunixRtError("--session-timeout must be a positive number of seconds")
    return PushOptions(kernel_id=args.kernel_id, accelerator=args.accelerator, mode=args.mode,
                       config=args.config, dataset=args.dataset, eval_set=args.eval_set, bundle=args.bundle,
                       session_timeout=args.session_timeout, public=args.public, no_internet=args.no_internet,
                       ignore_quota=bool(getattr(args, "ignore_quota", False)))


def wait_options(args: argparse.Namespace) -> WaitOptions:
    return WaitOptions.from_args(args.timeout, args.poll_min, args.poll_max)


def client_factory(reporter: Reporter) -> Callable[[], KaggleClient]:
    """Connect lazily (and once): commands that skip every stage never touch the network."""
    cache: list[KaggleClient] = []

    def factory() -> KaggleClient:
        if not cache:
            cache.append(connect(warn=reporter.warn))
        return cache[0]

    return factory


def stream_factory(reporter: Reporter) -> Callable[[], KaggleClient]:
    """The log-stream client (a long read timeout); the watcher makes it once and reuses it for every
    reconnect. The main client already checked the credentials, so this one does not again."""
    return lambda: connect(warn=reporter.warn, read_timeout_s=STREAM_READ_TIMEOUT_S, verify=False)


def reported(reporter: Reporter, body: Callable[[], int]) -> int:
    """Run ``body``; with ``--json`` a failure still ends with a result object (cli.py prints the error)."""
    try:
        return body()
    except TunixRtError as exc:
        reporter.result(exc.exit_code, error=exc.message)
        raise
