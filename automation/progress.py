"""The one Reporter every verb prints through: human lines (rich), or with ``--json`` one JSON object per line
on stdout, ending with a ``{"event": "result", …}`` object.

Every JSON object has ``event`` and ``t`` (seconds since the command started); the reporter's own events also
carry ``time`` (epoch seconds) and, when there is one, the human ``message``. The result object adds
``command`` and ``exit_code``; a failure's result has ``error`` (the one line the CLI prints on stderr).

Where human output goes: the Kaggle verbs (push, wait, pull, run, quota) keep stdout for the result line and
print progress on stderr; the local verbs (bundle, rehearse, validate, package, report) print everything on
stdout. A verb that shows a **kernel's console** (rehearse) hands :attr:`Reporter.stream` to its runner:
the console goes to stdout as it comes, or through a :class:`~tunix_rt.follow.Follower` (``--follow``: a live
training panel; ``--json``: ``log`` and ``metric`` events). There, tunix-rt's own messages are console lines
too (``{"event": "log", "line": …}`` under ``--json``), as the rehearsal always printed them. Any verb made
with ``follow=True`` gets the follower too, its own events staying structured: ``wait``/``run --follow`` feed
it the Kaggle log stream (log_follow.py); in a terminal their status line and messages then show with the
follower's live display (above the panel) instead of a second one.

Every message passes through the credential redactor first: nothing secret is ever printed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .redact import Redactor

_RESULTS = [0]  # result objects printed in this process (cli.py ends --json with one when no verb did)


def results_written() -> int:
    """How many ``--json`` result objects this process has printed."""
    return _RESULTS[0]


class Reporter:
    """One per command run. ``secrets`` are extra values to redact (the environment's are known already)."""

    def __init__(self, command: str, *, json_mode: bool = False, follow: bool = False, to_stdout: bool = False,
                 kernel_console: bool = False, secrets: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.json_mode = json_mode
        self.kernel_console = kernel_console
        self.secrets = tuple(secrets)  # credential values known to this command (the client's), redacted too
        self.redactor = Redactor(secrets)
        self.console = Console(stderr=not to_stdout, highlight=False, soft_wrap=True)
        self._clock = clock
        self._start = clock()
        self._live: Live | None = None
        self._last_plain = ""
        self._emit_lock = threading.Lock()
        self.follower: Any = None
        if follow or (kernel_console and json_mode):  # a console to show: live panel, plain lines or events
            from .follow import Follower

            self.follower = Follower.for_terminal(json_mode=json_mode, command=command, clock=clock,
                                                  start=self._start, emit=self._emit)

    # --- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> Reporter:
        if self.follower is not None:
            self.follower.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live displays (the follower's last state stays on screen)."""
        self.close_status()
        if self.follower is not None:
            self.follower.close()

    def elapsed(self) -> float:
        """Seconds since the command started (the ``t`` of every JSON object)."""
        return self._clock() - self._start

    def add_secrets(self, secrets: tuple[str, ...]) -> None:
        self.secrets = tuple(dict.fromkeys((*self.secrets, *secrets)))
        self.redactor = Redactor(self.secrets)

    # --- output -----------------------------------------------------------------------------------------
    @property
    def stream(self) -> TextIO:
        """Where a runner writes the kernel's console: the follower's line sink, else stdout."""
        return self.follower.sink if self.follower is not None else sys.stdout

    def _emit(self, obj: dict[str, Any]) -> None:
        obj.setdefault("t", round(self.elapsed(), 3))
        line = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
        with self._emit_lock:  # a log stream's thread emits too (wait --follow): one whole line at a time
            sys.stdout.write(self.redactor.redact(line) + "\n")
            sys.stdout.flush()

    def line(self, text: str) -> None:
        """A console line of tunix-rt's own (kernel-console verbs): through the follower, else printed."""
        if self.follower is not None:
            self.follower.line(self.redactor.redact(text))
        elif not self.json_mode:
            sys.stdout.write(self.redactor.redact(text) + "\n")
            sys.stdout.flush()

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        """A step happened. Human mode prints ``message`` (if any); JSON mode prints the whole event."""
        if self.kernel_console:
            if message:
                self.line(message)
        elif self.json_mode:
            extra = {"message": message} if message else {}
            self._emit({"event": event, "time": round(time.time(), 3), **extra, **fields})
        elif message:
            self._print(message)

    def warn(self, message: str) -> None:
        if self.kernel_console:
            self.line(f"warning: {message}")
        elif self.json_mode:
            self._emit({"event": "warning", "time": round(time.time(), 3), "message": message})
        else:
            self._print(f"[yellow]warning:[/] {self.redactor.redact(message)}", markup=True)

    def _print(self, message: str, *, markup: bool = False) -> None:
        text = message if markup else Text(self.redactor.redact(message))
        if self.follower is not None and self.follower.print_above(text):  # one live display on the screen
            return
        if self._live is not None:
            self._live.console.print(text)
        else:
            self.console.print(text)

    def status_line(self, text: str, key: str) -> None:
        """The live status line (a terminal) or, elsewhere, one plain line each time ``key`` changes."""
        if self.json_mode:
            return
        if self.follower is not None and self.follower.mode == "live":  # shown above the training panel
            self.follower.status = self.redactor.redact(text)
            return
        if self.console.is_terminal:
            if self._live is None:
                self._live = Live(Text(text), console=self.console, transient=True, auto_refresh=False)
                self._live.start()
            self._live.update(Text(self.redactor.redact(text)), refresh=True)
        elif key != self._last_plain:
            self._last_plain = key
            self.console.print(Text(self.redactor.redact(text)))

    def close_status(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def run(self, body: Callable[[], int], **on_error: Any) -> int:
        """Run a command's ``body``; with ``--json`` a failure still ends with a result object (``error``: the
        one line cli.py prints on stderr, plus ``on_error``)."""
        from .errors import TunixRtError

        try:
            return body()
        except TunixRtError as exc:
            self.result(exc.exit_code, error=exc.message, **on_error)
            raise
        except KeyboardInterrupt as exc:
            from .interrupts import exit_code, signal_name

            self.result(exit_code(exc), error=f"interrupted ({signal_name(exc)})", **on_error)
            raise
        except Exception as exc:  # a bug: cli.py prints one redacted line (crash.py); --json still ends
            from .crash import MAX_LINE
            from .errors import EXIT_INTERNAL

            self.result(EXIT_INTERNAL, error=f"internal error: {type(exc).__name__}: {exc}"[:MAX_LINE], **on_error)
            raise

    def result(self, exit_code: int, message: str = "", **fields: Any) -> None:
        """The final result: JSON mode prints the result object; human mode prints ``message`` to stdout."""
        self.close()
        if self.json_mode:
            _RESULTS[0] += 1
            self._emit({"event": "result", "command": self.command, "exit_code": exit_code,
                        "time": round(time.time(), 3), **({"message": message} if message else {}), **fields})
        elif message:
            print(self.redactor.redact(message))
            sys.stdout.flush()
