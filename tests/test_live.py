"""automation/live.py: lines in, log and metric events out, and the panel's state (on a simulated clock)."""

from __future__ import annotations

import json

from rich.console import Console
from tunix_rt.live import LiveMetrics, LogEvent, MetricEvent, format_duration, progress_text, render_panel
from tunix_rt.training.metric_line import format_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(step: int, **extra: object) -> dict:
    return {"step": step, "total_steps": 40, "loss": 6.0 / step, "tokens_per_second": 4567.8 if step > 1 else None,
            "elapsed_s": 1.0 + 0.5 * step, "eta_s": 0.5 * (40 - step) if step > 1 else None, "device_kind": "cpu",
            **extra}


def test_lines_become_log_and_metric_events_with_the_command_clock() -> None:
    clock = Clock()
    live = LiveMetrics(clock=clock)
    clock.now += 1.5
    log = live.feed("Executing Cell 11---\n")
    clock.now += 2.0
    metric = live.feed(format_line(_record(10)))
    assert isinstance(log, LogEvent) and log.as_json() == {"event": "log", "line": "Executing Cell 11---", "t": 1.5}
    assert isinstance(metric, MetricEvent)
    doc = metric.as_json()
    assert doc["event"] == "metric" and doc["t"] == 3.5
    assert (doc["step"], doc["loss"], doc["tokens_per_second"]) == (10, 0.6, 4567.8)
    assert json.loads(json.dumps(doc)) == doc
    # The progress line is the panel's, not a log line.
    assert list(live.tail) == ["Executing Cell 11---"]
    assert (live.state.metrics, live.state.log_lines) == (1, 1)


def test_a_record_cannot_forge_the_event_kind_or_time() -> None:
    event = LiveMetrics(clock=Clock()).feed(format_line(_record(2, event="result", t=999)))
    doc = event.as_json()
    assert doc["event"] == "metric" and doc["t"] == 0.0


def test_panel_state_counts_down_between_lines_and_stops_at_the_end() -> None:
    clock = Clock()
    live = LiveMetrics(clock=clock)
    live.feed(format_line(_record(20)))  # elapsed 11 s, 10 s left
    state = live.state
    assert (state.step, state.total_steps, state.fraction) == (20, 40, 0.5)
    clock.now += 4
    assert state.elapsed_at(live.now()) == 15.0 and state.eta_at(live.now()) == 6.0
    clock.now += 60
    assert state.eta_at(live.now()) == 0.0  # never negative
    live.feed(format_line(_record(40)))
    clock.now += 30
    assert state.elapsed_at(live.now()) == 21.0 and state.eta_at(live.now()) == 0.0  # finished: clocks stop


def test_progress_text_and_panel_show_what_a_person_needs() -> None:
    clock = Clock()
    live = LiveMetrics(clock=clock)
    assert "waiting for the first progress line" in progress_text(live.state, 0)
    live.feed(format_line(_record(12)))
    text = progress_text(live.state, live.now())
    assert text == "step 12/40 (30%) · loss 0.5000 · 4,568 tokens/s · elapsed 7.0s · ETA 14.0s · cpu"
    console = Console(record=True, width=100, color_system=None)
    console.print(render_panel(live.state, live.now()))
    drawn = console.export_text()
    for piece in ("training", "12 / 40", "30%", "0.5000", "4,568", "7.0s", "14.0s", "cpu"):
        assert piece in drawn, piece


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 4.25, 200, 7530)] == ["-", "4.2s", "3m20s", "2h05m"]
