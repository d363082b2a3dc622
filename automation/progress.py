"""What the Kaggle commands print: human lines (rich, on stderr) or, with ``--json``, one JSON object per
line on stdout (``{"event": …}``) ending with a ``{"event": "result", …}`` object.

Every message passes through the credential redactor first: nothing secret is ever printed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .redact import Redactor


class Reporter:
    """One per command run. ``secrets`` are extra values to redact (the environment's are known already)."""

    def __init__(self, command: str, *, json_mode: bool = False, secrets: tuple[str, ...] = ()) -> None:
        self.command = command
        self.json_mode = json_mode
        self.redactor = Redactor(secrets)
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._live: Live | None = None
        self._last_plain = ""

    def add_secrets(self, secrets: tuple[str, ...]) -> None:
        self.redactor = Redactor(secrets)

    def _emit(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, sort_keys=True, default=str)
        sys.stdout.write(self.redactor.redact(line) + "\n")
        sys.stdout.flush()

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        """A step happened. Human mode prints ``message`` (if any); JSON mode prints the whole event."""
        if self.json_mode:
            extra = {"message": message} if message else {}
            self._emit({"event": event, "time": round(time.time(), 3), **extra,
                        **fields})
        elif message:
            self._print(message)

    def warn(self, message: str) -> None:
        if self.json_mode:
            self._emit({"event": "warning", "time": round(time.time(), 3), "message": message})
        else:
            self._print(f"[yellow]warning:[/] {self.redactor.redact(message)}", markup=True)

    def _print(self, message: str, *, markup: bool = False) -> None:
        text = message if markup else Text(self.redactor.redact(message))
        if self._live is not None:
            self._live.console.print(text)
        else:
            self.console.print(text)

    def status_line(self, text: str, key: str) -> None:
        """The live status line (a terminal) or, elsewhere, one plain line each time ``key`` changes."""
        if self.json_mode:
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

    def result(self, exit_code: int, message: str = "", **fields: Any) -> None:
        """The final result: JSON mode prints the result object; human mode prints ``message`` to stdout."""
        self.close_status()
        if self.json_mode:
            self._emit({"event": "result", "command": self.command, "exit_code": exit_code,
                        **({"message": message} if message else {}), **fields})
        elif message:
            print(self.redactor.redact(message))
