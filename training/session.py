"""When a training session stops: the schedule's end, a wall-clock deadline, or a step budget (tests).

A Kaggle session is killed at its timeout (9 h on TPU, or the shorter ``sessionTimeoutSeconds`` a push sets:
kaggle-cli ``kernels push -t/--timeout``); whatever was not saved is lost. The kernel passes the deadline as
``--deadline_unix`` and the trainer asks :meth:`StopRule.is_last_step` after every optimizer step: once less
than ``margin_s`` plus one step's time is left, that step is the session's last — it is checkpointed and the
run ends cleanly as ``cut_for_time``, so the next session resumes from it.

Pure Python (no JAX): the decision is unit-testable with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

REASON_MAX_STEPS = "max_steps"  # the schedule is finished
REASON_DEADLINE = "deadline"  # the wall-clock deadline minus the safety margin was reached
REASON_STEP_BUDGET = "stop_after_steps"  # --stop_after_steps: a deterministic stand-in for the deadline


@dataclass
class StopRule:
    """Decides, step by step, whether the step just taken is the session's last.

    ``start_step`` is the step the session resumed from (0 for a fresh run); ``stop_after_steps`` caps the
    steps this session takes (a deadline measured in steps, for tests and rehearsals); ``deadline_unix`` is
    the Unix time by which the run must have ended, ``margin_s`` what is kept free before it.
    """

    max_steps: int
    start_step: int = 0
    deadline_unix: float | None = None
    margin_s: float = 0.0
    stop_after_steps: int | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False)
    stop_step: int | None = None  # set once the session's last step is known
    reason: str | None = None
    _last_check: float | None = field(default=None, repr=False)
    _step_s: float = field(default=0.0, repr=False)

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (None without one)."""
        return None if self.deadline_unix is None else self.deadline_unix - self.clock()

    def begin(self, start_step: int) -> bool:
        """Start the session at ``start_step``; True when it must not train at all (the deadline is already
        within the margin, or the schedule is finished), so the restored state is saved and the run ends."""
        self.start_step = start_step
        self._last_check = self.clock()
        if start_step >= self.max_steps:
            return self._stop(start_step, REASON_MAX_STEPS)
        remaining = self.remaining_s()
        if remaining is not None and remaining < self.margin_s:
            return self._stop(start_step, REASON_DEADLINE)
        return False

    def is_last_step(self, step: int) -> bool:
        """Called once after optimizer step ``step`` (1-based, absolute); True when the session ends there.

        The time left must cover the safety margin plus one more step (measured as the time between the last
        two calls), since the next check comes only after the next step."""
        if self.stop_step is not None:
            return step >= self.stop_step
        now = self.clock()
        if self._last_check is not None:
            self._step_s = now - self._last_check
        self._last_check = now
        if step >= self.max_steps:
            return self._stop(step, REASON_MAX_STEPS)
        if self.stop_after_steps is not None and step - self.start_step >= self.stop_after_steps:
            return self._stop(step, REASON_STEP_BUDGET)
        remaining = self.remaining_s()
        if remaining is not None and remaining < self.margin_s + self._step_s:
            return self._stop(step, REASON_DEADLINE)
        return False

    def _stop(self, step: int, reason: str) -> bool:
        self.stop_step, self.reason = step, reason
        return True

    @property
    def cut_for_time(self) -> bool:
        """The session stopped before the schedule's end (deadline or step budget)."""
        return self.reason in (REASON_DEADLINE, REASON_STEP_BUDGET)


def until_stop(batches: Iterable[T], rule: StopRule) -> Iterator[T]:
    """The batch stream (batch k = step k + 1), ending at the session's last step once ``rule`` knows it.

    Tunix draws batch k after it saved step k, so a step the rule ends the session at is never followed by
    another; the batches a resumed trainer skips pass through untouched."""
    for index, batch in enumerate(batches):
        if rule.stop_step is not None and index >= rule.stop_step:
            return
        yield batch
