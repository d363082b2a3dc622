"""Batch-size search of the accelerator bench: grow the batch until the device's memory is full, back off on OOM.

Pure logic (no JAX): the caller passes a ``try_batch`` function that trains at one batch size and reports
whether it ran out of memory and how much memory it used at its peak. Every try costs a compile, so the search
jumps rather than crawls: after a try that fits, the next batch is the largest doubling that a straight-line
memory estimate (peak = base + rows × per-row bytes) says still fits, and the search stops when even one
doubling would not. The estimate counts the gradients and optimizer temporaries as per-row memory, so it
errs on the side of fitting. Without a memory limit (CPU) it simply doubles up to ``max_batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HEADROOM = 0.95  # use at most this share of the device's memory limit (fragmentation, allocator slack)


@dataclass
class Try:
    """One training attempt at one batch size."""

    batch: int
    oom: bool
    wall_s: float  # whole attempt: model build + compile + steps
    compile_s: float = 0.0
    peak_bytes: int | None = None  # device peak after the attempt (None on CPU or after an OOM)
    base_bytes: int | None = None  # device memory in use before training (parameters, adapters)
    figures: dict[str, Any] = field(default_factory=dict)  # what the attempt measured (when it fit)


def round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def first_guess(limit_bytes: int | None, base_bytes: int, bytes_per_token: float, seq_len: int, multiple: int,
                max_batch: int) -> int:
    """A starting batch from a per-token memory estimate: the largest power of two (× multiple) that fits."""
    if not limit_bytes or bytes_per_token <= 0:
        return multiple
    rows = (limit_bytes * HEADROOM - base_bytes) / (bytes_per_token * seq_len)
    batch = multiple
    while batch * 2 <= min(rows, max_batch):
        batch *= 2
    return batch


def next_batch(last: Try, limit_bytes: int | None, max_batch: int) -> int | None:
    """The next batch to try after ``last`` fitted: ``last.batch`` × 2^k for the largest k ≥ 1 the memory
    estimate allows (capped at ``max_batch``); None when one doubling would not fit or the cap is reached."""
    doubled = last.batch * 2
    if doubled > max_batch:
        return None
    if not limit_bytes or last.peak_bytes is None or last.base_bytes is None:
        return doubled
    per_row = (last.peak_bytes - last.base_bytes) / last.batch
    if per_row <= 0:
        return doubled
    fits = (limit_bytes * HEADROOM - last.base_bytes) / per_row
    if doubled > fits:
        return None
    batch = doubled
    while batch * 2 <= min(fits, max_batch):
        batch *= 2
    return batch


def search(try_batch: Callable[[int], Try], start: int, *, multiple: int, max_batch: int,
           limit_bytes: int | None, deadline: float | None = None,
           clock: Callable[[], float] = time.time) -> tuple[Try | None, list[Try]]:
    """Grow from ``start`` until memory (or ``max_batch``) is full; return (largest try that fit, all tries).

    After an out-of-memory try the search backs off to the last batch that fit, trying once its plain doubling
    when the estimate had jumped further than that; when the very first try does not fit, the batch halves
    until one does. ``deadline`` (a ``clock()`` time) stops the growth when the next, larger try would likely
    end after it (estimated from the last try: same compile, longer steps).
    """
    batch = max(multiple, round_down(start, multiple))
    max_batch = max(multiple, round_down(max_batch, multiple))
    batch = min(batch, max_batch)
    tries: list[Try] = []
    best: Try | None = None
    def in_time(last: Try, grown: int) -> bool:
        if deadline is None:
            return True
        steps_s = max(last.wall_s - last.compile_s, 0.0)
        return clock() + last.compile_s + steps_s * grown / last.batch <= deadline

    while True:
        attempt = try_batch(batch)
        tries.append(attempt)
        tried = {t.batch for t in tries}
        too_big = min((t.batch for t in tries if t.oom), default=None)
        if attempt.oom:
            if best is None:  # nothing fits yet: halve
                if batch <= multiple:
                    break
                batch = round_down(batch // 2, multiple)
                continue
            # The estimate jumped too far: one plain doubling of the best may still fit ("back off").
            doubled = best.batch * 2
            if doubled < too_big and doubled not in tried and in_time(best, doubled):
                batch = doubled
                continue
            break
        best = attempt
        grown = next_batch(attempt, limit_bytes, max_batch)
        if grown is not None and too_big is not None and grown >= too_big:
            grown = attempt.batch * 2 if attempt.batch * 2 < too_big else None
        if grown is None or grown in tried or not in_time(attempt, grown):
            break
        batch = grown
    return best, tries
