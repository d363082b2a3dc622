"""The trainer's machine-readable progress line: ``TUNIX_RT_METRIC {json}``, one per logged training step.

One record per logged step feeds two places, so they can never disagree: a row of ``metrics.jsonl`` (the
JSON text) and a console line (:data:`PREFIX`, a space, the same JSON text) that a live viewer parses out
of the kernel's log (``tunix-rt rehearse --follow``; :mod:`tunix_rt.live`). The kernel runs an unpacked
copy of ``training/`` where tunix_rt is not installed, and the CLI imports this module to parse the lines:
it uses the standard library only.

Fields of a record (:data:`FIELDS`; a parser keeps unknown keys, so fields can be added later):

- ``step``: 1-based optimizer step just finished; ``total_steps``: steps this run trains;
- ``loss``: that step's masked NLL over the completion tokens; ``learning_rate``: the schedule's value used;
- ``tokens``: cumulative real (non-pad) tokens processed through that step;
- ``elapsed_s``: seconds since training began (step 1 includes the JIT compile);
- ``tokens_per_second`` and ``eta_s``: the rate since the first logged step (so the compile is left out)
  and the time the remaining steps take at the step rate since then; null at the first logged step;
- ``device_kind``: what JAX calls the first device (``cpu``, ``TPU v5 lite``, ``Tesla T4``).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

PREFIX = "TUNIX_RT_METRIC"
FIELDS = ("step", "total_steps", "loss", "learning_rate", "tokens", "tokens_per_second", "elapsed_s", "eta_s",
          "device_kind")
# The prefix opens the line; a log converter may have put ``[stderr] `` or ANSI codes in front of it.
_LINE = re.compile(r"^\s*(?:\x1b\[[0-9;]*m|\[[\w-]+\]\s*)*" + PREFIX + r"\s+(\{.*\})\s*$")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_line(record: dict[str, Any]) -> str:
    """The console line for ``record`` (no newline)."""
    return f"{PREFIX} {json_text(record)}"


def json_text(record: dict[str, Any]) -> str:
    """The record's JSON text: the metrics.jsonl row and the console line's payload (keys sorted)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def parse_line(line: str) -> dict[str, Any] | None:
    """The record a progress line carries, or None for any other line (or a damaged one).

    A record needs an integer ``step`` >= 0; ``loss`` and the rates must be numbers or null. Unknown keys
    are kept (a newer trainer may add fields)."""
    if PREFIX not in line:  # the common case, decided without a regex
        return None
    match = _LINE.match(line)
    if not match:
        return None
    try:
        record = json.loads(match.group(1))
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    for key in ("loss", "total_steps", "tokens_per_second", "elapsed_s", "eta_s", "learning_rate", "tokens"):
        if record.get(key) is not None and not _number(record[key]):
            return None
    return record


class MetricLog:
    """Writes each logged step once: a ``metrics.jsonl`` row and the console line, from the same record.

    ``metrics_file`` is the open ``metrics.jsonl``; ``console`` is where the progress line goes (stdout:
    the notebook relays it into the kernel's log). Rates are measured from the first step logged here,
    so a run resumed at step N measures from N, and the first step's compile time stays out of them."""

    def __init__(self, metrics_file: TextIO, total_steps: int, device_kind: str | None,
                 console: TextIO | None = None) -> None:
        self._file = metrics_file
        self._console = console
        self.total_steps = total_steps
        self.device_kind = device_kind
        self._first: tuple[int, int, float] | None = None  # (step, tokens, elapsed_s) of the first log

    def log(self, *, step: int, loss: float, learning_rate: float | None, tokens: int,
            elapsed_s: float) -> dict[str, Any]:
        """Build the step's record, append it to metrics.jsonl, print its line; returns the record."""
        if self._first is None:
            self._first = (step, tokens, elapsed_s)
        step0, tokens0, elapsed0 = self._first
        span = elapsed_s - elapsed0
        rate = (tokens - tokens0) / span if step > step0 and span > 0 else None
        eta = span / (step - step0) * max(self.total_steps - step, 0) if step > step0 else None
        record = {
            "step": step,
            "total_steps": self.total_steps,
            "loss": loss,
            "learning_rate": learning_rate,
            "tokens": tokens,
            "tokens_per_second": None if rate is None else round(rate, 1),
            "elapsed_s": round(elapsed_s, 4),
            "eta_s": None if eta is None else round(eta, 1),
            "device_kind": self.device_kind,
        }
        text = json_text(record)
        self._file.write(text + "\n")
        self._file.flush()
        console = self._console or sys.stdout
        console.write(f"{PREFIX} {text}\n")
        console.flush()
        return record
