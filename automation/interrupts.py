"""SIGTERM and SIGHUP behave like Ctrl-C.

A CI cancel or ``timeout`` sends SIGTERM; a closed terminal or SSH session sends SIGHUP. Python's default
for both is to die on the spot, skipping every ``finally``: the Docker container kept running and writing
into the run directory, papermill's kernel and the trainer were orphaned, temp folders stayed, and the stage
stayed ``running``. :func:`install` makes them raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the
main thread instead, so the one interrupt path already there runs for them too: runners/docker.py removes
the container, runners/local.py ends the kernel's process group, temporary folders are removed by their
``with`` blocks, the engine records the stage ``interrupted``; the command exits 128 + the signal number
(143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C), as a shell reports a process killed by it.

Only the first signal interrupts: the ones after it (a CI runner sends SIGTERM again before SIGKILL) are
noted and ignored, so the clean-up they would cut short gets to finish.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised where a Ctrl-C would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_state = {"interrupted": False}


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state["interrupted"]:
        print(f"tunix-rt: {signal.Signals(signum).name} again; still cleaning up", file=sys.stderr)
        return
    _state["interrupted"] = True
    raise Interrupted(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Interrupted` (main thread only: signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state["interrupted"] = False
    for sig in HANDLED:
        signal.signal(sig, _handler)


def signal_name(exc: BaseException) -> str:
    """``SIGTERM``/``SIGHUP`` for an :class:`Interrupted`, ``SIGINT`` for a plain Ctrl-C."""
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


def exit_code(exc: BaseException) -> int:
    """128 + the signal number that interrupted the command (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT))
