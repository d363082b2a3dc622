"""The kernel's live log stream as Kaggle serves it, watched for the moment the session ends.

``kernels_logs_stream`` (kaggle 2.2.5) is one long-lived request: SSE events while the session runs, ending
with ``END_OF_LOG`` when it is over; once the session is done it answers the persisted log instead (its
docstring). Kaggle's load balancer cuts idle streams after about 3 minutes and a reconnect replays the log
from the start (kaggle-cli PR #999: "To survive load-balancer idle timeouts (~3 minutes) mid-session, the
CLI wraps the stream in a reconnect loop that deduplicates the replayed prefix"; its review speaks of a
2-minute timeout). So:

* a connection that ends **without** ``END_OF_LOG`` (or the finished blob) is a **cut**, not the end of the
  session — whether it ended cleanly or with ``ChunkedEncodingError``/``ProtocolError`` ("Response ended
  prematurely"); the client's reader stops on both, kaggle_client.LogStream tells them apart;
* after a cut the wait loop reconnects: 1 s later when the connection had made progress (new lines, or
  served ≥ 30 s), else with backoff 2, 4, 8 … s; after 5 connections in a row without progress the watcher
  gives up and polling carries on alone (PR #999: reconnect delay 1 s, 5 failures without progress);
* replayed lines are skipped by counting events per connection (PR #999's dedup); each new event is handed
  to ``on_event`` (``--follow``: log_follow.py shows it), in order, exactly once;
* when the wait sees the version end while no connection delivered ``END_OF_LOG`` (the stream was between
  reconnects, given up, or never opened), a follower asks for the rest with :meth:`LogStreamWatch.drain`:
  one more connection, answered with the finished session's persisted log (the ``kernels_logs_stream``
  docstring), its already-shown prefix skipped;
* every connection is one API call, counted in the wait budget (``calls``: the stream client's sign-in
  included).

Threads: each connection runs in its own daemon thread, which only reads; the reconnect decisions are the
wait loop's (:meth:`LogStreamWatch.poke`), so ``bench/wait_cost.py`` can drive it on a simulated clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

RECONNECT_S = 1.0  # after a cut of a connection that made progress (PR #999: _LOG_STREAM_RECONNECT_DELAY_SEC)
SERVED_S = 30.0  # a connection that lasted this long counts as progress even without new lines
MAX_FAILURES = 5  # connections in a row without progress before giving up (PR #999: _LOG_STREAM_MAX_FAILURES)
BACKOFF_BASE_S = 1.0  # the n-th connection in a row without progress waits BACKOFF_BASE_S × 2^n
BACKOFF_MAX_S = 120.0
DRAIN_JOIN_S = 10.0  # how long drain() lets a live connection deliver END_OF_LOG after the session ended


class LogStreamWatch:
    """Watches the live log stream of ``owner/slug/vN``; ``ended`` is set once the session is over."""

    def __init__(self, factory: Callable[[], Any], kernel_ref: str, version: int,
                 served_s: float = SERVED_S, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ended = threading.Event()  # END_OF_LOG or the finished session's log: the session is over
        self.signal = threading.Event()  # a connection finished (ended or cut): the wait loop should look
        self.live = False
        self.connects = 0  # connections opened (each one API call)
        self.cuts = 0
        self.events = 0  # distinct log events seen (replays skipped)
        self.failures = 0  # connections in a row without progress
        self.gave_up = False
        self.last_error = ""
        self._factory, self._ref, self._version = factory, kernel_ref, version
        self._served_s = served_s
        self._on_event = on_event  # gets each new event (replays skipped), in the connection's thread
        self._client: Any = None
        self._next_at = 0.0
        self._thread: threading.Thread | None = None

    @property
    def calls(self) -> int:
        """API calls of the stream client (sign-in and every connection)."""
        return int(getattr(self._client, "calls", 0) or 0)

    @property
    def in_use(self) -> bool:
        """The stream is (or is about to be again) the completion signal."""
        return self.connects > 0 and not self.gave_up and not self.ended.is_set()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def due_in(self) -> float | None:
        """Seconds until the next connection is due, or None when none is (live, ended, given up)."""
        if self.running() or self.gave_up or self.ended.is_set():
            return None
        return max(0.0, self._next_at - time.monotonic())

    def poke(self) -> None:
        """Open a connection when one is due (from the wait loop, only while the session runs)."""
        due = self.due_in()
        if due is None or due > 0:
            return
        if self._client is None:
            # Signed in here, in the caller's thread: connect() redirects stdout while the client signs in,
            # which must never happen while another thread prints.
            try:
                self._client = self._factory()
            except Exception as exc:  # refused, unreachable: the stream is optional
                self.last_error = type(exc).__name__
                self._failed(time.monotonic())
                return
        self.signal.clear()
        self._thread = threading.Thread(target=self._connect, name="tunix-rt-log-stream", daemon=True)
        self._thread.start()

    def _failed(self, now: float) -> None:
        """One more connection without progress: back off, and give up after MAX_FAILURES in a row."""
        self.failures += 1
        self._next_at = now + min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** self.failures)
        self.gave_up = self.failures >= MAX_FAILURES

    def stats(self) -> dict[str, Any]:
        """What the stream did (recorded in run_state ``kaggle.log_stream``)."""
        return {"connections": self.connects, "cuts": self.cuts, "events": self.events,
                "ended": self.ended.is_set(), "gave_up": self.gave_up}

    def drain(self, join_s: float = DRAIN_JOIN_S) -> None:
        """The rest of the log once the session is over (``--follow``; see the module docstring): let a live
        connection finish (it ends with ``END_OF_LOG`` now), else connect once more, in this thread."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(join_s)
        if self.ended.is_set() or self.running():
            return
        if self._client is None:
            try:
                self._client = self._factory()
            except Exception as exc:  # the stream is optional: the log is pulled with the outputs anyway
                self.last_error = type(exc).__name__
                return
        self._connect()

    def _connect(self) -> None:
        opened = time.monotonic()
        before = self.events
        finished = False
        try:
            stream = self._client.log_stream(self._ref, self._version)
            self.connects += 1
            self.live = True
            for index, event in enumerate(stream, 1):
                if index > self.events:  # Kaggle replays from the start after a reconnect
                    self.events = index
                    if self._on_event is not None:
                        self._on_event(event)
            finished = bool(getattr(stream, "finished", False))
        except Exception as exc:  # cut mid-chunk, refused, not visible yet, unsupported: decided below
            self.last_error = type(exc).__name__
        finally:
            self.live = False
            now = time.monotonic()
            if finished:
                self.ended.set()
            else:
                self.cuts += 1  # ended without END_OF_LOG: cut, refused or failed
                if self.events > before or now - opened >= self._served_s:
                    self.failures = 0
                    self._next_at = now + RECONNECT_S
                else:
                    self._failed(now)
            self.signal.set()
