"""Wait for the pushed kernel version to finish: poll ``GetKernelSessionStatus`` of ``owner/slug/vN``.

**Stale status** (a defensive guess: no public source shows Kaggle answering the previous session for a
``versionLabel`` it was asked about; kaggle-cli PR #1201 is about the CLI dropping the version, fixed in
2.2.5). We always ask for the pushed version (``versionLabel vN``). A terminal status is accepted only
once this version has been seen QUEUED/RUNNING/NEW_SCRIPT (remembered in run_state ``kaggle.seen_active``,
so a resumed wait keeps it) or once the stale grace (``--stale-grace``, default 30 s) has passed since the
push — a real Kaggle session needs longer than that to start, run and stop.

A COMPLETE never seen preceded by QUEUED/RUNNING is also checked against this version's own output list
(one ListKernelSessionOutput call): a version that has not run lists no files, so the previous version's
COMPLETE is never taken for this one, however long after the push it is answered (issue 14: accepting it
left pull with 0 files and every rerun stuck). An ERROR or cancel not seen preceded by QUEUED/RUNNING is
still taken after the grace: a failed version may legitimately list no files.

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
reconnects ≈ 460 calls, under 540 (``bench/wait_cost.py``). Without the stream (``--no-log-stream``,
refused, or given up after 5 connections without progress) we fall back to plain polling: ≈ 545 calls and a
lag ≤ ``poll_max``. :func:`poll_calls` computes the status-call count for a duration.

**Deadline.** ``--timeout`` counts from this wait's start; the default is the push time + the session
timeout + 30 min (queueing). Passing it → exit 3, state kept: ``tunix-rt wait`` again resumes the same
version. So does Ctrl-C or a crash: the run state is written after every status change.

**Following** (``--follow``, the reporter has a follower): the same stream connections hand their lines to
log_follow.py, which shows them (and the training panel) as they come; following opens no connection and
makes no status call that waiting would not. Only when the version ends without a connection having seen
``END_OF_LOG`` (between reconnects, or given up) does the follower spend one more stream call for the rest of
the log (:meth:`~tunix_rt.log_stream.LogStreamWatch.drain`), counted like every other.

**One poll at a time.** :class:`VersionWait` makes one status call per :meth:`VersionWait.poll` and says when
the next is due; :func:`wait` is the loop for one version. A poller watching many versions can drive many
``VersionWait`` objects itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import knobs
from .errors import EXIT_KERNEL_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, TunixRtError
from .kaggle_client import KaggleClient, NotVisible, not_visible_error
from .kernel_status import ACTIVE, FINISHED, TERMINAL, KernelStatus
from .log_follow import StreamFeed
from .log_stream import SERVED_S, LogStreamWatch
from .progress import Reporter
from .runstate import KaggleRecord, RunState, utc_now

QUEUE_MARGIN_S = 30 * 60
GROWTH = 1.5
CANCEL_REQUESTED_POLLS = 3  # CANCEL_REQUESTED that stays put this many polls counts as terminal
STALE_GRACE_S = float(knobs.STALE_GRACE.default or 0)


@dataclass(frozen=True)
class WaitOptions:
    """``--timeout``, ``--poll-min``, ``--poll-max``, ``--stale-grace``, ``--no-log-stream`` plus one knob
    only tests turn (knobs.STREAM_SERVED_S)."""

    timeout: float | None = None
    poll_min: float = 5.0
    poll_max: float = 60.0
    stale_grace_s: float = STALE_GRACE_S
    log_stream: bool = True
    stream_served_s: float = SERVED_S  # a cut stream that served this long reconnects at once (log_stream.py)

    @classmethod
    def from_args(cls, timeout: float | None, poll_min: float | None, poll_max: float | None,
                  stale_grace: float | None = None, log_stream: bool | None = None) -> WaitOptions:
        """The flags, with the defaults of those not given (knobs.py: their environment variables)."""
        base = cls()
        pmin = base.poll_min if poll_min is None else poll_min
        pmax = max(pmin, base.poll_max if poll_max is None else poll_max)
        if pmin <= 0 or (timeout is not None and timeout <= 0):
            raise TunixRtError("--poll-min and --timeout must be positive", EXIT_USAGE)
        grace = knobs.number(knobs.STALE_GRACE, base.stale_grace_s) if stale_grace is None else stale_grace
        if grace < 0:
            raise TunixRtError("--stale-grace must not be negative", EXIT_USAGE)
        stream = knobs.enabled(knobs.LOG_STREAM) if log_stream is None else log_stream
        served = knobs.number(knobs.STREAM_SERVED_S, base.stream_served_s)
        return cls(timeout, pmin, pmax, grace, stream, served)


@dataclass(frozen=True)
class WaitResult:
    """How the pushed version ended, and what waiting cost."""

    kernel_ref: str
    version_number: int
    status: KernelStatus
    failure_message: str | None
    api_calls: int

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.status == KernelStatus.COMPLETE else EXIT_KERNEL_FAILED

    @property
    def message(self) -> str:
        text = f"{self.kernel_ref} v{self.version_number} finished: {self.status}"
        return text + (f" ({self.failure_message})" if self.failure_message else "")


@dataclass(frozen=True)
class Poll:
    """One poll's outcome: the status (None: not visible yet), whether the version is done, and how long to
    pause before the next poll."""

    status: KernelStatus | None
    done: bool
    pause_s: float = 0.0


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


def pushed_record(state: RunState) -> KaggleRecord:
    """The Kaggle record of a pushed version; exit 2 when nothing was pushed or the push was refused."""
    kaggle = state.kaggle
    if kaggle is None or not kaggle.pushed or not kaggle.kernel_ref:
        raise TunixRtError(f"{state.run_dir}: nothing pushed yet (run_state.json has no kaggle version); "
                           "run `tunix-rt push` first", EXIT_USAGE)
    if kaggle.push_error:
        raise TunixRtError(kaggle.push_error, EXIT_USAGE)
    return kaggle


def finished(kaggle: KaggleRecord) -> bool:
    """An earlier wait saw this version end."""
    return kaggle.status in FINISHED and bool(kaggle.finished_at)


class VersionWait:
    """Waiting for one pushed version, one status call per :meth:`poll` (see the module docstring)."""

    def __init__(self, state: RunState, opts: WaitOptions, client: KaggleClient, reporter: Reporter,
                 watch: LogStreamWatch | None = None, feed: StreamFeed | None = None) -> None:
        self.state, self.opts, self.client, self.reporter, self.watch = state, opts, client, reporter, watch
        self.feed = feed  # --follow: the stream's lines go to the reporter's follower
        self._warned_gave_up = False
        self.kaggle = pushed_record(state)
        self.ref, self.version = str(self.kaggle.kernel_ref), int(self.kaggle.version_number or 0)
        self.start = time.time()
        self.pushed = float(self.kaggle.pushed_at_epoch or self.start)
        if opts.timeout is not None:
            self.deadline = self.start + opts.timeout
        else:
            self.deadline = self.pushed + float(self.kaggle.session_timeout_s or 9 * 3600) + QUEUE_MARGIN_S
        # A resumed wait keeps counting; a fresh connection's sign-in (auth, credential check) counts too.
        fresh = client.calls == getattr(client, "sign_in_calls", -1)
        self._calls0 = self.kaggle.wait_api_calls - (0 if fresh else client.calls)
        self._last = self.kaggle.status
        self._cancel_polls = 0
        self._k = 0
        self.failure: str | None = None

    def calls(self) -> int:
        """API calls this version's waits spent (status polls, stream connections, sign-ins)."""
        return self._calls0 + self.client.calls + (self.watch.calls if self.watch else 0)

    def _status(self, in_grace: bool) -> tuple[KernelStatus | None, str]:
        try:
            name, failure = self.client.status(self.ref, self.version)
        except NotVisible as exc:
            if in_grace:
                return None, ""
            raise not_visible_error(self.ref, exc.http_status, getattr(self.client, "username", None),
                                    self.version) from exc
        try:
            return KernelStatus.parse(name), failure
        except ValueError as exc:
            raise TunixRtError(f"{self.ref} v{self.version}: {exc}", EXIT_USAGE) from exc

    def poll(self) -> Poll:
        """One status call and what follows from it (raises exit 3 at the deadline, state written)."""
        now = time.time()
        in_grace = now - self.pushed < self.opts.stale_grace_s
        status, failure = self._status(in_grace)
        kaggle, calls = self.kaggle, self.calls()
        changed = False
        if status in ACTIVE and not kaggle.seen_active:
            kaggle.seen_active = changed = True
        self._cancel_polls = self._cancel_polls + 1 if status == KernelStatus.CANCEL_REQUESTED else 0
        terminal = status in TERMINAL or self._cancel_polls >= CANCEL_REQUESTED_POLLS
        ignored = False
        if terminal and not kaggle.seen_active and in_grace:
            self.reporter.event("stale_status_ignored", f"ignoring {status} for v{self.version}: not seen queued "
                                "or running yet (likely the previous session)", status=status)
            terminal, self._k, ignored = False, 0, True
        elif terminal and not kaggle.seen_active and status == KernelStatus.COMPLETE and not self._lists_files():
            self.reporter.event("stale_status_ignored", f"ignoring {status} for v{self.version}: not seen queued "
                                "or running, and it lists no output files (likely the previous version's)",
                                status=status)
            terminal, ignored = False, True
        if status is not None and status != self._last and not ignored:
            kaggle.status, kaggle.last_status_at, kaggle.wait_api_calls = status, utc_now(), calls
            changed = True
            self.reporter.event("status", f"{self.ref} v{self.version}: {status}", status=status, api_calls=calls,
                                elapsed_s=round(now - self.pushed, 1))
            self._last = status
        if terminal:
            kaggle.status, kaggle.failure_message, kaggle.finished_at = status, failure or None, utc_now()
            self._finish_follow()
            self._record_counters()
            return Poll(status, True)  # the stage's record writes the state
        if changed:
            self.state.write()  # a resumed wait keeps seen_active and the status
        if now >= self.deadline:
            self._record_counters()
            raise TunixRtError(
                f"{self.ref} v{self.version} still {status} at the deadline ({round(now - self.start)} s); the "
                "kernel keeps running on Kaggle: run `tunix-rt wait` again to resume", EXIT_TIMEOUT)
        cap = self.opts.poll_max * 2 if self.watch is not None and self.watch.in_use else self.opts.poll_max
        pause = min(interval(self._k, self.opts.poll_min, cap), max(0.0, self.deadline - time.time()))
        self._k += 1
        return Poll(status, False, pause)

    def _finish_follow(self) -> None:
        """``--follow``: the rest of the log (one stream call, only when no connection saw the end), then the
        last unterminated lines."""
        if self.feed is None:
            return
        if self.watch is not None and not self.watch.ended.is_set():
            self.watch.drain()
        self.feed.close()

    def _lists_files(self) -> bool:
        """Whether this version's output list has any file: a version COMPLETE on Kaggle lists its outputs
        (ListKernelSessionOutput), one that has not run yet lists none (the stale-status guard)."""
        try:
            page = self.client.output_page(self.ref, self.version, None, 1)
        except NotVisible:
            return False
        return bool(getattr(page, "files", None))

    def _record_counters(self) -> None:
        self.kaggle.wait_api_calls = self.calls()
        if self.watch is not None:
            self.kaggle.log_stream = self.watch.stats()

    def pause(self, poll: Poll) -> None:
        """Sleep until the next poll; with a log stream, wake for its connections (reconnect after a cut when
        one is due) and poll at once when it says the session ended."""
        running = poll.status == KernelStatus.RUNNING  # before RUNNING there is no session to stream
        watch = self.watch if self.watch is not None and not self.watch.ended.is_set() else None
        if watch is not None and running:
            watch.poke()
        if self.feed is not None and watch is not None and watch.gave_up and not self._warned_gave_up:
            self._warned_gave_up = True
            self.reporter.warn(f"the kernel's log stream failed {watch.failures} times in a row "
                               f"({watch.last_error or 'no answer'}); not following it any more: polling goes on, "
                               "and the whole log comes with the outputs")
        self.reporter.status_line(
            f"{self.ref} v{self.version}  {poll.status or 'not visible yet'}  elapsed {_hms(time.time() - self.pushed)}"
            f"  next poll in {poll.pause_s:.{0 if poll.pause_s >= 10 else 1}f} s  ({self.calls()} calls)",
            key=str(poll.status))
        until = time.time() + poll.pause_s
        while True:
            left = until - time.time()
            if left <= 0:
                return
            if watch is None:
                self.client.policy.sleep(left)
                return
            due = watch.due_in() if running else None
            watch.signal.wait(left if due is None else min(left, due))
            watch.signal.clear()
            if watch.ended.is_set():
                self.reporter.event("log_stream_ended", "the kernel's log stream ended; checking status now",
                                    **watch.stats())
                self._k = 0  # the session is ending: poll fast until the status flips
                return
            if running:
                watch.poke()

    def result(self) -> WaitResult:
        kaggle = self.kaggle
        result = WaitResult(self.ref, self.version, KernelStatus(kaggle.status), kaggle.failure_message,
                            kaggle.wait_api_calls)
        self.reporter.event("finished", result.message, status=result.status,
                            failure_message=result.failure_message, api_calls=result.api_calls)
        return result


def wait(state: RunState, opts: WaitOptions, client_factory: Callable[[], KaggleClient], reporter: Reporter,
         stream_factory: Callable[[], KaggleClient] | None = None) -> WaitResult:
    """Poll until the pushed version is terminal; returns how it ended (``exit_code`` 0 or 1). Raises
    :class:`TunixRtError` with exit 3 at the deadline, 5 on API failure."""
    kaggle = pushed_record(state)
    follower = getattr(reporter, "follower", None)
    feed = StreamFeed(follower) if follower is not None and stream_factory is not None else None
    if finished(kaggle):
        if feed is not None and stream_factory is not None:  # --follow once it ended: its log, one stream call
            _replay_log(kaggle, reporter, stream_factory, feed)
        return _finished_before(kaggle, reporter)
    client = client_factory()
    reporter.add_secrets(client.credentials.secrets)
    watch = (LogStreamWatch(stream_factory, str(kaggle.kernel_ref), int(kaggle.version_number or 0),
                            opts.stream_served_s, on_event=feed)
             if (opts.log_stream or feed is not None) and stream_factory is not None else None)
    waiter = VersionWait(state, opts, client, reporter, watch, feed)
    reporter.event("wait_started", f"waiting for {kaggle.label}", kernel_ref=waiter.ref,
                   version_number=waiter.version, deadline_in_s=round(waiter.deadline - waiter.start, 1))
    try:
        while True:
            poll = waiter.poll()
            if poll.done:
                return waiter.result()
            waiter.pause(poll)
    finally:
        reporter.close_status()


def _replay_log(kaggle: KaggleRecord, reporter: Reporter, stream_factory: Callable[[], KaggleClient],
                feed: StreamFeed) -> None:
    """The log of a version that ended before this command: a finished session's stream answers the persisted
    log blob, which the client yields as the same events (kaggle 2.2.5 ``kernels_logs_stream``; PR #999).
    One stream call; no status call, no credential check (a rejected key fails that call, and the log comes
    with ``pull`` anyway)."""
    def factory() -> KaggleClient:
        client = stream_factory()
        reporter.add_secrets(client.credentials.secrets)
        return client

    watch = LogStreamWatch(factory, str(kaggle.kernel_ref), int(kaggle.version_number or 0), on_event=feed)
    watch.drain()
    feed.close()
    if not watch.ended.is_set():
        reporter.warn(f"could not replay the log of {kaggle.label} ({watch.last_error or 'no answer'}); "
                      "`tunix-rt pull` brings it with the outputs")


def _finished_before(kaggle: KaggleRecord, reporter: Reporter) -> WaitResult:
    result = WaitResult(str(kaggle.kernel_ref), int(kaggle.version_number or 0), KernelStatus(kaggle.status),
                        kaggle.failure_message, kaggle.wait_api_calls)
    reporter.event("finished", result.message, status=result.status, failure_message=result.failure_message,
                   api_calls=result.api_calls)
    return result


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
