"""Live training progress read from a kernel's log: feed it lines, get events and a panel.

The trainer prints one ``TUNIX_RT_METRIC {json}`` line per logged step (:mod:`tunix_rt.training.metric_line`,
the same record as its ``metrics.jsonl`` row). :class:`LiveMetrics` is fed text lines from any source — the
local and Docker runners' console (through :class:`tunix_rt.follow.LineSink`), or a Kaggle log stream — that
are already redacted and ``\\r``-folded, one line per call. Each line becomes one event:

* a progress line → :class:`MetricEvent` (``{"event": "metric", "step": …, "loss": …, "t": …}``);
* any other line → :class:`LogEvent` (``{"event": "log", "line": …, "t": …}``).

A progress line is not also a log event: the panel (or the metric event) is how it is shown; the raw log
keeps it. ``t`` is seconds since the command started (the caller's clock, injectable for tests).
:class:`PanelState` keeps what a live panel shows (step/total, loss, tokens/s, elapsed, ETA, device kind);
:func:`render_panel` draws it with rich and :func:`progress_text` as one plain line.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunix_rt.training.metric_line import parse_line

_RESERVED = ("event", "t")  # event keys a record cannot override


@dataclass(frozen=True)
class LogEvent:
    """A console line that is not a progress line."""

    line: str
    t: float

    def as_json(self) -> dict[str, Any]:
        return {"event": "log", "line": self.line, "t": round(self.t, 3)}


@dataclass(frozen=True)
class MetricEvent:
    """One logged training step (the trainer's record, as printed)."""

    record: dict[str, Any]
    t: float

    def as_json(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.record.items() if k not in _RESERVED}
        return {"event": "metric", **fields, "t": round(self.t, 3)}


Event = LogEvent | MetricEvent


@dataclass
class PanelState:
    """What the live panel shows, from the latest progress line."""

    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    elapsed_s: float | None = None  # training time when the last progress line was printed
    eta_s: float | None = None  # the trainer's estimate at that moment
    device_kind: str | None = None
    metric_t: float | None = None  # when that line arrived (command clock)
    metrics: int = 0  # progress lines seen
    log_lines: int = 0  # other lines seen

    def update(self, record: dict[str, Any], t: float) -> None:
        self.step = record["step"]
        self.total_steps = record.get("total_steps", self.total_steps)
        self.loss = record.get("loss")
        self.tokens_per_second = record.get("tokens_per_second")
        self.elapsed_s = record.get("elapsed_s")
        self.eta_s = record.get("eta_s")
        self.device_kind = record.get("device_kind", self.device_kind)
        self.metric_t = t
        self.metrics += 1

    @property
    def training(self) -> bool:
        """Steps remain: the clocks keep running between progress lines."""
        return self.step is not None and self.total_steps is not None and self.step < self.total_steps

    def elapsed_at(self, t: float) -> float | None:
        """Training time at command time ``t``: the last line's value plus the time since it arrived."""
        if self.elapsed_s is None or self.metric_t is None:
            return self.elapsed_s
        return self.elapsed_s + (max(t - self.metric_t, 0.0) if self.training else 0.0)

    def eta_at(self, t: float) -> float | None:
        """Seconds of training left at command time ``t`` (the trainer's estimate counted down, >= 0)."""
        if self.eta_s is None or self.metric_t is None:
            return self.eta_s
        return max(self.eta_s - max(t - self.metric_t, 0.0), 0.0) if self.training else 0.0

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(self.step / self.total_steps, 1.0)


class LiveMetrics:
    """Turns lines into events and keeps the panel state and the last ``tail_lines`` non-blank log lines."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, start: float | None = None,
                 tail_lines: int = 200) -> None:
        self._clock = clock
        self.start = clock() if start is None else start
        self.state = PanelState()
        self.tail: deque[str] = deque(maxlen=tail_lines)

    def now(self) -> float:
        """Seconds since the command started."""
        return self._clock() - self.start

    def feed(self, line: str, t: float | None = None) -> Event:
        """The event for one line (its trailing newline, if any, is dropped)."""
        line = line.rstrip("\r\n")
        t = self.now() if t is None else t
        record = parse_line(line)
        if record is not None:
            self.state.update(record, t)
            return MetricEvent(record, t)
        self.state.log_lines += 1
        if line.strip():  # blank lines (papermill adds one after each output) would only eat screen rows
            self.tail.append(line)
        return LogEvent(line, t)


def format_duration(seconds: float | None) -> str:
    """``42.0s``, ``3m20s``, ``2h05m`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def progress_text(state: PanelState, t: float) -> str:
    """The panel as one plain line (for logs and non-terminals)."""
    if state.step is None:
        return f"training: waiting for the first progress line ({state.log_lines} log lines so far)"
    total = f"/{state.total_steps:,}" if state.total_steps else ""
    pct = f" ({state.fraction:.0%})" if state.fraction is not None else ""
    return (f"step {state.step:,}{total}{pct} · loss {_num(state.loss, '.4f')} · "
            f"{_num(state.tokens_per_second, ',.0f')} tokens/s · elapsed {format_duration(state.elapsed_at(t))} · "
            f"ETA {format_duration(state.eta_at(t))} · {state.device_kind or 'device ?'}")


def render_panel(state: PanelState, t: float) -> Any:
    """A rich Panel with step/total (and a bar), loss, tokens/s, elapsed, ETA and the device kind."""
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if state.step is None:
        grid.add_row("step", Text(f"waiting for the trainer's first progress line ({state.log_lines} log lines)",
                                  style="dim"))
    else:
        step = Table.grid(padding=(0, 1))
        total = f" / {state.total_steps:,}" if state.total_steps else ""
        cells: list[Any] = [Text(f"{state.step:,}{total}")]
        if state.fraction is not None:
            cells += [ProgressBar(total=1.0, completed=state.fraction, width=30), Text(f"{state.fraction:.0%}")]
        step.add_row(*cells)
        grid.add_row("step", step)
        grid.add_row("loss", _num(state.loss, ".4f"))
        grid.add_row("tokens/s", _num(state.tokens_per_second, ",.0f"))
        grid.add_row("elapsed", format_duration(state.elapsed_at(t)))
        grid.add_row("ETA", format_duration(state.eta_at(t)))
    grid.add_row("device", state.device_kind or "-")
    return Panel(grid, title="training", title_align="left", expand=False)
