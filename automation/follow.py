"""``--follow``: show a run's console live, with a training panel above it, or as JSON events.

:class:`LineSink` is a writable text stream that cuts what a runner writes into lines (``\\r`` redraws
folded to their last state, ANSI codes dropped, credentials redacted) and hands each to a callback; the
local and Docker runners already write their console into the ``stream`` they are given, so a rehearsal
follows by passing one. :class:`Follower` turns the lines into :mod:`tunix_rt.live` events and shows them:

* ``live`` (a terminal): a rich Live display — the training panel, and under it the latest log lines that
  fit the screen (the whole console stays in ``raw_log/``);
* ``plain`` (not a terminal): every log line as it comes, and a one-line progress summary per metric line;
* ``json``: one JSON object per line on stdout: ``{"event": "log", "line", "t"}``,
  ``{"event": "metric", "step", "loss", "tokens_per_second", …, "t"}`` and finally
  ``{"event": "result", "exit_code", …, "t"}``; ``t`` is seconds since the command started.

Nothing here knows where lines come from, so a Kaggle log stream feeds :meth:`Follower.line` too
(log_follow.py, ``wait``/``run --follow``); there the command's own status line shows above the panel
(:attr:`Follower.status`) and its messages print above the display (:meth:`Follower.print_above`).
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from .live import Event, LiveMetrics, LogEvent, progress_text, render_panel
from .redact import Redactor

MODES = ("live", "plain", "json")
MAX_PENDING_CHARS = 1 << 16  # an unterminated line longer than this is handed on as it is
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_PANEL_ROWS = 9  # the panel's height in a terminal (borders included), kept free above the log tail


def fold(line: str) -> str:
    """The last drawn state of a line redrawn with carriage returns."""
    if "\r" not in line:
        return line
    for piece in reversed(line.split("\r")):
        if piece.strip():
            return piece
    return ""


class LineSink(io.TextIOBase):
    """A text stream that passes each whole line written to it (``\r``-folded, ANSI codes dropped) on.

    Writes may cut lines anywhere (Docker hands over chunks); a line is passed on once its newline came,
    and whatever is left is passed on by :meth:`close`. Thread-safe: one lock around the buffer."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        super().__init__()
        self._on_line = on_line
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            buf = self._pending + text
            lines = buf.split("\n")
            self._pending = lines.pop()
            if len(self._pending) > MAX_PENDING_CHARS:  # a progress bar redrawn for hours without a newline
                lines.append(self._pending)
                self._pending = ""
            for line in lines:
                self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        line = fold(line.removesuffix("\r"))
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        self._on_line(line)

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""
        super().close()


class Follower:
    """Shows events in one of :data:`MODES`; use as a context manager around the run.

    ``out`` is where JSON events and plain lines go (stdout); ``console`` is the rich console for ``live``
    (default: one on ``out``). Every line is redacted here, whatever fed it. ``clock`` (and ``start``, the
    command's start on it) is injectable for tests; ``emit`` takes the JSON objects when a Reporter prints
    them (progress.py), so every object of a command shares one ``t``."""

    def __init__(self, mode: str, *, command: str, out: TextIO | None = None, console: Any = None,
                 clock: Callable[[], float] | None = None, start: float | None = None,
                 refresh_per_second: float = 4.0, redactor: Redactor | None = None,
                 emit: Callable[[dict[str, Any]], None] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"follow mode {mode!r}: expected one of {MODES}")
        self.mode = mode
        self.command = command
        self._out = out
        self._emit_json = emit  # JSON objects go here (the command's Reporter) instead of straight to ``out``
        self.metrics = LiveMetrics(clock=clock, start=start) if clock is not None else LiveMetrics(start=start)
        self._console = console
        self._live: Any = None
        self._refresh = refresh_per_second
        self._lock = threading.Lock()
        self._redact = (redactor or Redactor()).redact
        self.sink = LineSink(self.line)
        self.status = ""  # live: one line above the panel (the Kaggle verbs' status: version, status, next poll)

    @classmethod
    def for_terminal(cls, *, json_mode: bool, command: str, out: TextIO | None = None, **options: Any) -> Follower:
        """``json`` with ``--json``; else ``live`` on a terminal, ``plain`` elsewhere (pipes, CI logs).
        ``options`` are the other keyword arguments of the constructor."""
        if json_mode:
            return cls("json", command=command, out=out, **options)
        stream = out or sys.stdout
        return cls("live" if stream.isatty() else "plain", command=command, out=out, **options)

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout  # looked up late: tests capture sys.stdout

    def __enter__(self) -> Follower:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console(file=self.out, highlight=False)
            self._console = console
            self._live = Live(get_renderable=self._renderable, console=console,
                              refresh_per_second=self._refresh, transient=False, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Pass on a last unterminated line and stop the live display (its final state stays on screen)."""
        if not self.sink.closed:
            self.sink.close()
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def line(self, text: str) -> Event:
        """Feed one line (from any source) and show its event."""
        with self._lock:
            event = self.metrics.feed(self._redact(text))
            self._show(event)
        return event

    def _show(self, event: Event) -> None:
        if self.mode == "json":
            self._json(event.as_json())
        elif self.mode == "plain":
            text = event.line if isinstance(event, LogEvent) else progress_text(self.metrics.state, event.t)
            self.out.write(text + "\n")
            self.out.flush()
        # live: the display redraws itself from the state and the tail

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        t = self.metrics.now()
        height = self._console.size.height if self._console is not None else 24
        status = self.status
        room = max(height - _PANEL_ROWS - (1 if status else 0), 3)
        with self._lock:  # the refresh thread reads while the runner's thread feeds lines
            tail = list(self.metrics.tail)[-room:]
        parts: list[Any] = [Text(status, style="dim", no_wrap=True, overflow="ellipsis")] if status else []
        parts += [render_panel(self.metrics.state, t), Text("\n".join(tail), no_wrap=True, overflow="ellipsis")]
        return Group(*parts)

    def print_above(self, text: Any) -> bool:
        """``live``: print ``text`` (a message of the command's own) above the display; False in other modes
        (the caller prints it where it always does)."""
        if self._live is None:
            return False
        self._live.console.print(text)
        return True

    def _json(self, obj: dict[str, Any]) -> None:
        if self._emit_json is not None:
            self._emit_json(obj)
            return
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def result(self, exit_code: int, **fields: Any) -> None:
        """The final event (JSON mode only): ``{"event": "result", "command", "exit_code", …, "t"}``."""
        if self.mode == "json":
            self._json({"event": "result", "command": self.command, "exit_code": exit_code, **fields,
                        "t": round(self.metrics.now(), 3)})
