"""The stop rule of a training session, on a simulated clock: where a session ends and why."""

from __future__ import annotations

import pytest
from tunix_rt.training.session import (
    REASON_DEADLINE,
    REASON_MAX_STEPS,
    REASON_STEP_BUDGET,
    StopRule,
    until_stop,
)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _steps_until_stop(rule: StopRule, clock: FakeClock, start: int, step_s: float) -> int:
    """Drive ``rule`` as the trainer does (one check per step, ``step_s`` apart); the step it ends at."""
    if rule.begin(start):
        return start
    step = start
    while True:
        clock.now += step_s
        step += 1
        if rule.is_last_step(step):
            return step


def test_without_a_deadline_the_session_ends_at_max_steps() -> None:
    clock = FakeClock()
    rule = StopRule(max_steps=50, clock=clock)
    assert _steps_until_stop(rule, clock, 0, step_s=1.0) == 50
    assert (rule.reason, rule.cut_for_time, rule.stop_step) == (REASON_MAX_STEPS, False, 50)


def test_deadline_keeps_the_margin_plus_one_step_free() -> None:
    clock = FakeClock()
    # 100 s to the deadline, 30 s margin, 10 s steps: after step k, 100 - 10k s remain; it must stop while
    # remaining >= margin + one step, i.e. at the first k with 100 - 10k < 40 → k = 7 (30 s left, 0 s used).
    rule = StopRule(max_steps=1000, deadline_unix=clock.now + 100, margin_s=30, clock=clock)
    assert _steps_until_stop(rule, clock, 0, step_s=10.0) == 7
    assert (rule.reason, rule.cut_for_time) == (REASON_DEADLINE, True)
    assert rule.remaining_s() == pytest.approx(30.0)  # the margin is left for the checkpoint and the outputs


def test_a_slow_step_is_accounted_for() -> None:
    clock = FakeClock()
    rule = StopRule(max_steps=1000, deadline_unix=clock.now + 100, margin_s=10, clock=clock)
    assert not rule.begin(0)
    clock.now += 50  # the first step (JIT compile) took 50 s: another would end at 100 s, past 90 s
    assert rule.is_last_step(1)
    assert rule.reason == REASON_DEADLINE


def test_deadline_within_the_margin_at_start_trains_nothing() -> None:
    clock = FakeClock()
    rule = StopRule(max_steps=100, deadline_unix=clock.now + 20, margin_s=30, clock=clock)
    assert rule.begin(40)  # resumed at step 40: the restored state is saved again and the run ends
    assert (rule.stop_step, rule.reason, rule.cut_for_time) == (40, REASON_DEADLINE, True)


def test_resuming_a_finished_schedule_trains_nothing() -> None:
    rule = StopRule(max_steps=30, clock=FakeClock())
    assert rule.begin(30)
    assert (rule.stop_step, rule.reason, rule.cut_for_time) == (30, REASON_MAX_STEPS, False)


def test_step_budget_counts_this_sessions_steps() -> None:
    clock = FakeClock()
    rule = StopRule(max_steps=30, stop_after_steps=12, clock=clock)
    assert _steps_until_stop(rule, clock, 12, step_s=1.0) == 24
    assert (rule.reason, rule.cut_for_time) == (REASON_STEP_BUDGET, True)
    last = StopRule(max_steps=30, stop_after_steps=12, clock=clock)
    assert _steps_until_stop(last, clock, 24, step_s=1.0) == 30  # the schedule ends first: not a cut
    assert (last.reason, last.cut_for_time) == (REASON_MAX_STEPS, False)


def test_once_decided_the_answer_stays() -> None:
    clock = FakeClock()
    rule = StopRule(max_steps=30, stop_after_steps=2, clock=clock)
    rule.begin(0)
    assert not rule.is_last_step(1)
    assert rule.is_last_step(2)
    clock.now += 10_000
    assert rule.is_last_step(2) and rule.stop_step == 2 and rule.reason == REASON_STEP_BUDGET


def test_until_stop_ends_the_stream_after_the_last_step() -> None:
    rule = StopRule(max_steps=10, clock=FakeClock())
    stream = until_stop(iter(range(10)), rule)
    drawn = [next(stream), next(stream), next(stream)]  # batches 0-2 = steps 1-3
    rule.stop_step = 5  # the rule ends the session at step 5: batches 3 and 4 remain
    assert drawn + list(stream) == [0, 1, 2, 3, 4]


def test_until_stop_passes_the_skipped_batches_of_a_resumed_run() -> None:
    rule = StopRule(max_steps=10, clock=FakeClock())
    rule.begin(6)
    rule.stop_step = 6  # decided at start: nothing to train, but the 6 batches Tunix skips still pass
    assert list(until_stop(iter(range(10)), rule)) == [0, 1, 2, 3, 4, 5]
