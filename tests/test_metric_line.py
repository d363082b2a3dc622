"""training/metric_line.py: the trainer's progress line and its metrics.jsonl row are one record."""

from __future__ import annotations

import io
import json

import pytest
from tunix_rt.training.metric_line import FIELDS, PREFIX, MetricLog, format_line, parse_line


def _log(steps: int = 100) -> tuple[MetricLog, io.StringIO, io.StringIO]:
    rows, console = io.StringIO(), io.StringIO()
    return MetricLog(rows, steps, "TPU v5 lite", console=console), rows, console


def test_each_step_is_one_record_in_both_places() -> None:
    log, rows, console = _log()
    log.log(step=1, loss=5.0, learning_rate=0.0, tokens=100, elapsed_s=10.0)  # the compile step
    log.log(step=11, loss=4.0, learning_rate=0.001, tokens=1100, elapsed_s=12.0)
    log.log(step=21, loss=3.5, learning_rate=0.002, tokens=2100, elapsed_s=14.0)
    written = [json.loads(line) for line in rows.getvalue().splitlines()]
    printed = [parse_line(line) for line in console.getvalue().splitlines()]
    assert printed == written
    assert all(line.startswith(PREFIX + " {") for line in console.getvalue().splitlines())
    assert [tuple(sorted(r)) for r in written] == [tuple(sorted(FIELDS))] * 3
    first, second, third = written
    # No rate at the first logged step (it carries the JIT compile); after it, measured from it.
    assert first["tokens_per_second"] is None and first["eta_s"] is None
    assert second["tokens_per_second"] == 500.0  # 1000 tokens in 2 s
    assert second["eta_s"] == pytest.approx(2.0 / 10 * 89)  # 0.2 s/step, 89 steps left
    assert third["eta_s"] == pytest.approx(4.0 / 20 * 79)
    assert third == {"step": 21, "total_steps": 100, "loss": 3.5, "learning_rate": 0.002, "tokens": 2100,
                     "tokens_per_second": 500.0, "elapsed_s": 14.0, "eta_s": 15.8, "device_kind": "TPU v5 lite"}


def test_a_resumed_run_measures_from_its_first_logged_step() -> None:
    log, rows, _ = _log(steps=50)
    log.log(step=30, loss=2.0, learning_rate=None, tokens=3000, elapsed_s=5.0)
    rec = log.log(step=50, loss=1.0, learning_rate=None, tokens=5000, elapsed_s=9.0)
    assert rec["tokens_per_second"] == 500.0 and rec["eta_s"] == 0.0


@pytest.mark.parametrize("prefix", ["", "  ", "[stderr] ", "\x1b[0m"])
def test_parse_accepts_the_line_behind_log_decorations(prefix: str) -> None:
    record = {"step": 3, "loss": 1.5, "total_steps": 9}
    assert parse_line(prefix + format_line(record) + "\n") == record


@pytest.mark.parametrize(
    "line",
    [
        "step 3 loss 1.5",
        f"{PREFIX}",
        f"{PREFIX} not json",
        f"{PREFIX} [1, 2]",
        f'{PREFIX} {{"loss": 1.0}}',  # no step
        f'{PREFIX} {{"step": -1, "loss": 1.0}}',
        f'{PREFIX} {{"step": true, "loss": 1.0}}',
        f'{PREFIX} {{"step": 1, "loss": "low"}}',
        f'{PREFIX} {{"step": 1, "loss": 1.0',  # cut off
        f'print("{PREFIX} {{}}")',  # the prefix inside another line
    ],
)
def test_parse_refuses_other_and_damaged_lines(line: str) -> None:
    assert parse_line(line) is None


def test_unknown_fields_are_kept_for_newer_trainers() -> None:
    assert parse_line(format_line({"step": 1, "loss": 2.0, "grad_norm": 0.5}))["grad_norm"] == 0.5
