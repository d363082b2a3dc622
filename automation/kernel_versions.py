"""Where a kernel stands on Kaggle, for the never-push-twice guarantee (push.py).

``currentVersionNumber`` (GetKernel) is not trusted on its own: the SDK does not document when it
advances, and it may lag until the new version's session ends (the emulator's ``version_lags`` mode
models that). Versions are asked for directly instead: GetKernel with ``versionLabel v<N>`` answers that
version (kaggle-cli PR #1201's table: ``version_label="v1"`` → version 1's source) or 403/404 when it is
not there (or not visible yet). So:

* :func:`look_up`: GetKernel → exists? title, ``currentVersionNumber`` N; then ``v<N+1>``, ``v<N+2>``, …
  until one is not there: the real latest version, however far the field lags.
* :func:`landed`: after an ambiguous push failure, does ``v<previous+1>`` exist? Asked a few times,
  spaced out, because a version that was just created may not be visible at once (the same post-push
  grace that wait.py gives the status); with ``until``, asked on until then: the **settle window**
  (push.py), since a SaveKernel whose reply never came may still complete on the server minutes later.

A 403/404 on GetKernel of a kernel this run never pushed means "does not exist yet" (Kaggle answers 403
for kernels the caller cannot see, kaggle-cli PR #1201; the owner is the authenticated user, preflight.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .kaggle_client import KaggleClient

MAX_PROBES = 20  # versions probed past currentVersionNumber (a lag of 20 pushes would be extraordinary)
LANDED_PROBES = 3  # "is v<N+1> there?" asked this many times after an ambiguous push failure
SETTLE_SPACING_MAX_S = 30.0  # looks during a settle window are at most this far apart


@dataclass(frozen=True)
class KernelState:
    """The kernel as Kaggle shows it to this account now."""

    exists: bool
    title: str | None
    latest: int  # the highest version that exists (0 for a kernel that does not exist yet)
    reported: int  # what currentVersionNumber said (for messages)


def look_up(client: KaggleClient, kernel_ref: str) -> KernelState:
    """GetKernel, then probe ``v<N+1>``… for versions ``currentVersionNumber`` does not show yet."""
    info = client.get_kernel(kernel_ref)
    if info is None:
        return KernelState(False, None, 0, 0)
    latest = info.current_version
    for _ in range(MAX_PROBES):
        if client.get_kernel(kernel_ref, latest + 1) is None:
            break
        latest += 1
    return KernelState(True, info.title or None, latest, info.current_version)


def landed(client: KaggleClient, kernel_ref: str, previous: int,
           sleep: Callable[[float], None], spacing_s: float, *, until: float | None = None,
           clock: Callable[[], float] = time.time) -> int | None:
    """The version an ambiguous push created (``previous + 1``), or None when Kaggle does not show it after
    :data:`LANDED_PROBES` looks ``spacing_s``, 2×``spacing_s``, … apart and, with ``until`` (a ``clock()``
    time), not before ``until`` either: looks on, at most :data:`SETTLE_SPACING_MAX_S` apart, the last one
    at ``until``."""
    expected = previous + 1
    probe = 0
    while True:
        if client.get_kernel(kernel_ref, expected) is not None:
            return expected
        probe += 1
        pause = min(spacing_s * 2 ** (probe - 1), SETTLE_SPACING_MAX_S)
        left = None if until is None else until - clock()
        if probe >= LANDED_PROBES and (left is None or left <= 0):
            return None
        if left is not None and left > 0 and probe >= LANDED_PROBES:
            pause = min(pause, left)
        sleep(max(pause, 0.0))
