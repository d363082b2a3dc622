"""Wait for the pushed kernel version to finish: poll ``GetKernelSessionStatus`` of ``owner/slug/vN``.

**Stale status** (a defensive guess: no public source shows Kaggle answering the previous session for a
``versionLabel`` it was asked about; kaggle-cli PR #1201 is about the CLI dropping the version, fixed in
2.2.5). We always ask for the pushed version (``versionLabel vN``). A terminal status is accepted only
once this version has been seen QUEUED/RUNNING/NEW_SCRIPT (remembered in run_state ``kaggle.seen_active``,
so a resumed wait keeps it) or once ``stale_grace_s`` (default 30 s) has passed since the push — a real
Kaggle session needs longer than that to start, run and stop.

**Not visible yet.** Kaggle answers 403 (or 404) for a kernel or version it does not show the caller
(kaggle-cli PR #1201; kaggle-api #548). Inside the same post-push window that means "not visible yet" and
the poll goes on; outside it, the error names the kernel and says this account cannot see it (exit 2) —
never "check your credentials": those were checked once at sign-in (kaggle_client.py).

**Interval and budget.** Polls start at ``poll_min`` (5 s) and grow ×1.5 to ``poll_max`` (60 s). Polling
alone cannot give both goals for a 9-hour run: completion seen ≤ 30 s after it happens needs polls ≤ 30 s
apart whenever it might happen, i.e. 1080 calls, while ≤ 540 calls means 60 s apart. The cheap signal
that breaks the tie is the kernel's live log stream (log_stream.py): it ends with ``END_OF_LOG`` when the
session ends, so the loop polls at once and detection takes one poll; while the stream is in use the
status poll is only a safety net whose cap doubles (120 s). Kaggle cuts idle streams after ~3 minutes and
a reconnect costs one call (PR #999): with a cut every 180 s a 9-hour run costs ≈ 280 status calls + 180
reconnects ≈ 460 calls, under 540 (``bench/wait_cost.py``). Without the stream (``TUNIX_RT_LOG_STREAM=0``,
refused, or given up after 5 connections without progress) we fall back to plain polling: ≈ 545 calls and a
lag ≤ ``poll_max``. :func:`poll_calls` computes the status-call count for a duration.

**Deadline.** ``--timeout`` counts from this wait's start; the default is the push time + the session
timeout + 30 min (queueing). Passing it → exit 3, state kept: ``tunix-rt wait`` again resumes the same
version. So does Ctrl-C or a crash: nothing but the state file records progress, and it is written
atomically after every status change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import runstate
from .errors import EXIT_KERNEL_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, TunixRtError
from .kaggle_client import KaggleClient, NotVisible, not_visible_error
from .log_stream import LogStreamWatch
from .progress import Reporter
from .push import utc_now

TERMINAL = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"}
ACTIVE = {"QUEUED", "RUNNING", "NEW_SCRIPT"}
QUEUE_MARGIN_S = 30 * 60
GROWTH = 1.5
CANCEL_REQUESTED_POLLS = 3  # CANCEL_REQUESTED that stays put this many polls counts as terminal


@dataclass(frozen=True)
class WaitOptions:
    """``--timeout``, ``--poll-min``, ``--poll-max`` plus the knobs tests turn."""

    timeout: float | None = None
    poll_min: float = 5.0
    poll_max: float = 60.0
    stale_grace_s: float = 30.0
    log_stream: bool = True
    stream_served_s: float = 30.0  # a cut stream that served this long reconnects at once (log_stream.py)

    @classmethod
    def from_args(cls, timeout: float | None, poll_min: float | None, poll_max: float | None) -> WaitOptions:
        base = cls()
        pmin = base.poll_min if poll_min is None else poll_min
        pmax = max(pmin, base.poll_max if poll_max is None else poll_max)
        if pmin <= 0 or (timeout is not None and timeout <= 0):
            raise TunixRtError("--poll-min and --timeout must be positive", EXIT_USAGE)
        grace = float(os.environ.get("TUNIX_RT_STALE_GRACE_S") or base.stale_grace_s)
        stream = os.environ.get("TUNIX_RT_LOG_STREAM", "1") not in ("0", "false", "no")
        served = float(os.environ.get("TUNIX_RT_STREAM_SERVED_S") or base.stream_served_s)
        return cls(timeout, pmin, pmax, grace, stream, served)


def interval(k: int, poll_min: float, cap: float) -> float:
    """The k-th wait between polls: poll_min × 1.5^k, capped."""
    return min(cap, poll_min * GROWTH ** min(k, 64))


def poll_calls(duration_s: float, poll_min: float = 5.0, cap: float = 60.0) -> int:
    """Status calls a wait spends on a run of ``duration_s`` (one poll at t=0, then the schedule)."""
    t, k, calls = 0.0, 0, 1
    while t < duration_s:
        t += interval(k, poll_min, cap)
        k += 1
        calls += 1
    return calls


def _status_or_none(client: KaggleClient, ref: str, version: int, in_grace: bool) -> tuple[str, str]:
    try:
        return client.status(ref, version)
    except NotVisible as exc:
        if in_grace:
            return "NOT_VISIBLE_YET", ""
        raise not_visible_error(ref, exc.http_status, getattr(client, "username", None), version) from exc


def _pause(until: float, watch: LogStreamWatch | None, client: KaggleClient, running: bool) -> bool:
    """Sleep until ``until``; with a log stream, wake for its connections (reconnect after a cut when one is
    due) and return True at once when it says the session ended."""
    while True:
        left = until - time.time()
        if left <= 0:
            return False
        if watch is None:
            client.policy.sleep(left)
            return False
        due = watch.due_in() if running else None
        watch.signal.wait(left if due is None else min(left, due))
        watch.signal.clear()
        if watch.ended.is_set():
            return True
        if running:
            watch.poke()


def _save(run_dir: Any, **fields: Any) -> None:
    state = runstate.load(run_dir)
    state.setdefault("kaggle", {}).update(fields)
    runstate.save(run_dir, state)


def wait(run_dir: Any, opts: WaitOptions, client_factory: Callable[..., KaggleClient], reporter: Reporter,
         stream_factory: Callable[[], KaggleClient] | None = None) -> int:
    """Poll until the pushed version is terminal. Returns 0 (COMPLETE) or 1 (ERROR/cancelled);
    raises :class:`TunixRtError` with exit 3 at the deadline, 5 on API failure."""
    state = runstate.load(run_dir)
    kaggle = state.get("kaggle") or {}
    version = kaggle.get("version_number")
    ref = kaggle.get("kernel_ref")
    if not version or not ref:
        raise TunixRtError(f"{run_dir}: nothing pushed yet (run_state.json has no kaggle version); "
                           "run `tunix-rt push` first")
    if kaggle.get("push_error"):
        raise TunixRtError(kaggle["push_error"], EXIT_USAGE)
    if kaggle.get("status") in TERMINAL | {"CANCEL_REQUESTED"} and kaggle.get("finished_at"):
        return _finish_result(kaggle, reporter)

    start_wall = time.time()
    pushed = float(kaggle.get("pushed_at_epoch") or start_wall)
    if opts.timeout is not None:
        deadline = start_wall + opts.timeout
    else:
        deadline = pushed + float(kaggle.get("session_timeout_s") or 9 * 3600) + QUEUE_MARGIN_S
    client = client_factory()
    reporter.add_secrets(client.credentials.secrets)
    seen_active = bool(kaggle.get("seen_active"))
    watch = (LogStreamWatch(stream_factory, ref, int(version), opts.stream_served_s)
             if opts.log_stream and stream_factory is not None else None)
    # A resumed wait keeps counting; a fresh connection's sign-in (auth, credential check) counts too.
    fresh = client.calls == getattr(client, "sign_in_calls", -1)
    calls0 = int(kaggle.get("wait_api_calls") or 0) - (0 if fresh else client.calls)
    last_status, cancel_polls, k = kaggle.get("status"), 0, 0
    reporter.event("wait_started", f"waiting for {ref} v{version}", kernel_ref=ref, version_number=version,
                   deadline_in_s=round(deadline - start_wall, 1))

    def count() -> int:
        return calls0 + client.calls + (watch.calls if watch else 0)

    try:
        while True:
            now = time.time()
            in_grace = now - pushed < opts.stale_grace_s
            status, failure = _status_or_none(client, ref, int(version), in_grace)
            calls = count()
            if status in ACTIVE and not seen_active:
                seen_active = True
                _save(run_dir, seen_active=True)
            cancel_polls = cancel_polls + 1 if status == "CANCEL_REQUESTED" else 0
            terminal = status in TERMINAL or cancel_polls >= CANCEL_REQUESTED_POLLS
            if terminal and not seen_active and in_grace:
                reporter.event("stale_status_ignored", f"ignoring {status} for v{version}: not seen queued "
                               "or running yet (likely the previous session)", status=status)
                terminal, k = False, 0
            if status != last_status and status != "NOT_VISIBLE_YET":
                _save(run_dir, status=status, last_status_at=utc_now(), wait_api_calls=calls)
                reporter.event("status", f"{ref} v{version}: {status}", status=status, api_calls=calls,
                               elapsed_s=round(now - pushed, 1))
                last_status = status
            if terminal:
                _save(run_dir, status=status, failure_message=failure or None, finished_at=utc_now(),
                      wait_api_calls=calls, **({"log_stream": watch.stats()} if watch else {}))
                runstate.mark_stage(run_dir, "wait", "done", kaggle_status=status)
                return _finish_result(runstate.load(run_dir)["kaggle"], reporter)
            if now >= deadline:
                _save(run_dir, wait_api_calls=calls, **({"log_stream": watch.stats()} if watch else {}))
                raise TunixRtError(
                    f"{ref} v{version} still {status} at the deadline ({round(now - start_wall)} s); the "
                    "kernel keeps running on Kaggle: run `tunix-rt wait` again to resume", EXIT_TIMEOUT)
            running = status == "RUNNING"  # before RUNNING there is no session to stream
            listening = watch is not None and not watch.ended.is_set()
            if listening and running:
                watch.poke()
            cap = opts.poll_max * 2 if watch is not None and watch.in_use else opts.poll_max
            pause = min(interval(k, opts.poll_min, cap), max(0.0, deadline - time.time()))
            k += 1
            reporter.status_line(
                f"{ref} v{version}  {status}  elapsed {_hms(time.time() - pushed)}  "
                f"next poll in {pause:.{0 if pause >= 10 else 1}f} s  ({count()} calls)", key=status)
            if _pause(time.time() + pause, watch if listening else None, client, running):
                reporter.event("log_stream_ended", "the kernel's log stream ended; checking status now",
                               **watch.stats())  # type: ignore[union-attr]
                k = 0  # the session is ending: poll fast until the status flips
    finally:
        reporter.close_status()


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _finish_result(kaggle: dict[str, Any], reporter: Reporter) -> int:
    status = kaggle.get("status")
    ok = status == "COMPLETE"
    message = f"{kaggle.get('kernel_ref')} v{kaggle.get('version_number')} finished: {status}"
    if kaggle.get("failure_message"):
        message += f" ({kaggle['failure_message']})"
    reporter.event("finished", message, status=status, failure_message=kaggle.get("failure_message"),
                   api_calls=kaggle.get("wait_api_calls"))
    return EXIT_OK if ok else EXIT_KERNEL_FAILED
