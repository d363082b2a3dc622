"""Waiting cost: API calls and completion-detection lag of the real ``tunix-rt wait`` loop over long runs.

    python bench/wait_cost.py [--runs 120] [--hours 9] [--queue-s 30] [--stream-cut-s 180] [--follow] [--out DIR]

The real :func:`tunix_rt.wait.wait` and the real log-stream watcher (:mod:`tunix_rt.log_stream`) run
unchanged against a simulated clock: the ``time`` and ``threading`` names of both modules are swapped for a
discrete-event clock (``time.time``/``monotonic``, the retry policy's ``sleep``, and ``Event.wait`` advance
simulated time instead of sleeping), and the client they are given models a Kaggle session: QUEUED for
``--queue-s``, RUNNING, then COMPLETE at the finish time. Each log-stream connection still runs in a real
thread; its stream blocks until the simulated clock reaches the session's end (``--log-end-lead-s`` before
the status turns COMPLETE; the stream then ends with ``END_OF_LOG``) or, first, the load balancer's cut
(Kaggle cuts idle streams after about 3 minutes, kaggle-cli PR #999: the connection ends without
``END_OF_LOG`` every ``--stream-cut-s`` seconds, and the watcher reconnects). Nothing of the schedule is
reimplemented here: intervals, caps, the stream wake-up, reconnects and the counters are the project's.

Scenarios (each over the same ``--runs`` finish times spread over 0–``--hours`` h, the last exactly at it):
  * ``tunix-rt (log stream, cut every N s)``: the default — status polls plus the live log stream as Kaggle
    serves it, cut every ``--stream-cut-s`` (180 s: the worst case, a session that logs nothing);
  * ``tunix-rt (log stream, never cut)``: a stream that holds until the session ends;
  * ``tunix-rt (polling only)``: ``TUNIX_RT_LOG_STREAM=0`` (or a server without the stream);
  * ``fixed 10 s`` / ``fixed 15 s``: what the GitHub actions do (one status call every N s), computed.
With ``--follow`` the two log-stream scenarios also run as ``tunix-rt wait --follow``: the session logs a line
every ``--log-every-s`` seconds while it runs (every ``--metric-every``-th a ``TUNIX_RT_METRIC`` line), each
connection replays the log so far and delivers the lines written while it is open, and the reporter carries
the real :class:`~tunix_rt.follow.Follower` (JSON mode, into memory), fed by the real
:class:`~tunix_rt.log_follow.StreamFeed`. Besides calls and lag, each such run checks that every logged line
was shown exactly once (``lines_shown`` = ``lines_logged``, replays skipped) and counts the drain calls (one
stream call at the end when no connection saw ``END_OF_LOG``). The cut schedule is kept (worst case: a
session that logs is not idle, and Kaggle would cut it less often).
Figures: calls for the full-length run (every status poll, every stream connection, and each client's
sign-in: ``--sign-in-calls``, 1 by default — an API token's IntrospectToken, or a legacy key's one credential
check for the status client), calls and lag
(median, max) over all finish times. Goal (issues 5 and 8): ≤ 540 calls over 9 h with completion seen
≤ 30 s after it happens.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine import median, out_arg, table, write_result

GOAL_CALLS_9H = 540
GOAL_LAG_S = 30.0
T0 = 1_800_000_000.0  # simulated epoch of the push


class SimClock:
    """Simulated time; advancing it ends any log stream whose end time is passed (in order)."""

    def __init__(self) -> None:
        self.now = T0
        self.streams: list[SimStream] = []

    def next_stream(self, until: float) -> SimStream | None:
        live = [s for s in self.streams if not s.released and s.end <= until]
        return min(live, key=lambda s: s.end) if live else None

    def advance(self, until: float, flag: SimEvent | None = None) -> bool:
        """Move to ``until``, ending streams on the way; stop early (True) once ``flag`` is set."""
        while (stream := self.next_stream(until)) is not None:
            self.now = max(self.now, stream.end)
            stream.release_and_join()
            if flag is not None and flag.is_set():
                return True
        self.now = max(self.now, until)
        return flag is not None and flag.is_set()

    # the ``time`` module as wait.py uses it
    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(self.now + seconds)


class SimEvent:
    """``threading.Event`` whose ``wait(timeout)`` advances the simulated clock instead of sleeping."""

    clock: SimClock  # set on the subclass made per simulation

    def __init__(self) -> None:
        self._flag = False

    def set(self) -> None:
        self._flag = True

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        return self.clock.advance(self.clock.now + (timeout or 0.0), flag=self)


class SimThread:
    """``threading.Thread`` that runs the target for real but returns from ``start`` only once the target
    blocks on its simulated stream (or ends), so the simulation stays deterministic."""

    clock: SimClock

    def __init__(self, target: Any, name: str | None = None, daemon: bool | None = None) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)

    def start(self) -> None:
        n_streams = len(self.clock.streams)
        self._thread.start()
        while self._thread.is_alive():
            if len(self.clock.streams) > n_streams and self.clock.streams[-1].blocked.wait(0.001):
                return
            self._thread.join(0.0005)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


@dataclass
class SimStream:
    """One log-stream connection: iterating it blocks until the clock releases it at ``end``; afterwards
    ``finished`` says whether it ended with END_OF_LOG (as kaggle_client.LogStream does)."""

    end: float
    ends_session: bool  # True: END_OF_LOG (the session ended); False: the load balancer cuts it
    log: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (time, event) the session logs
    opened: float = 0.0
    released: bool = False
    finished: bool = False
    blocked: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._thread = threading.current_thread()
        sent = 0
        for when, event in self.log:  # Kaggle replays the log from the start on every connection
            if when > self.opened:
                break
            sent += 1
            yield event
        self.blocked.set()
        self._go.wait()
        for when, event in self.log[sent:]:  # what the session wrote while the connection was open
            if when > self.end:
                break
            yield event
        if not self.ends_session:
            # What requests raises when the connection ends mid chunked body ("Response ended prematurely").
            raise ConnectionError("simulated: the load balancer cut the idle log stream")
        self.finished = True

    def release_and_join(self) -> None:
        self.released = True
        self._go.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Session:
    """A Kaggle session as the status API reports it."""

    finish: float  # seconds after the push when the status turns COMPLETE
    queue_s: float
    stream_cut_s: float | None  # None: a stream holds until the session ends
    log_end_lead_s: float = 0.0  # the log stream ends this long before the status turns COMPLETE
    log_every_s: float | None = None  # --follow: the session prints a line this often while it runs
    metric_every: int = 10  # every n-th line is a TUNIX_RT_METRIC line

    def log(self) -> list[tuple[float, dict[str, Any]]]:
        """(absolute time, stream event) of every line the session prints, from RUNNING to its log's end."""
        if not self.log_every_s:
            return []
        from tunix_rt.training.metric_line import format_line

        start, end = T0 + min(self.queue_s, self.finish / 2), T0 + max(0.0, self.finish - self.log_end_lead_s)
        out, k = [], 0
        while (when := start + k * self.log_every_s) < end:
            k += 1
            text = (format_line({"step": k // self.metric_every, "loss": 1.0 / k, "tokens_per_second": 1000.0})
                    if k % self.metric_every == 0 else f"line {k}")
            out.append((when, {"stream_name": "stdout", "time": when - start, "data": text + "\n"}))
        return out


class SimClient:
    """What wait.py needs of :class:`tunix_rt.kaggle_client.KaggleClient`, answering from a Session."""

    def __init__(self, clock: SimClock, session: Session, sign_in_calls: int = 0) -> None:
        self.clock, self.session = clock, session
        self.calls = self.sign_in_calls = sign_in_calls  # a fresh connection's sign-in (counted by wait.py)
        self.credentials = types.SimpleNamespace(secrets=())
        self.policy = types.SimpleNamespace(sleep=clock.sleep)
        self.complete_seen_at: float | None = None
        self._log = session.log()

    def status(self, kernel_ref: str, version: int | None) -> tuple[str, str]:
        self.calls += 1
        now = self.clock.now  # compared in absolute simulated time (T0 + x - T0 != x in floating point)
        if now < T0 + min(self.session.queue_s, self.session.finish / 2):
            return "QUEUED", ""
        if now < T0 + self.session.finish:
            return "RUNNING", ""
        if self.complete_seen_at is None:
            self.complete_seen_at = now - T0
        return "COMPLETE", ""

    def log_stream(self, kernel_ref: str, version: int) -> SimStream:
        self.calls += 1
        finish = T0 + max(0.0, self.session.finish - self.session.log_end_lead_s)
        cut = self.session.stream_cut_s
        end, ends_session = finish, True
        if cut is not None and self.clock.now + cut < finish:
            end, ends_session = self.clock.now + cut, False
        stream = SimStream(max(end, self.clock.now), ends_session, self._log, opened=self.clock.now)
        if stream.end <= self.clock.now:  # the session's log is over: answered at once
            stream.released = True
            stream._go.set()
        self.clock.streams.append(stream)
        return stream


class _QuietReporter:
    """Collects wait.py's events instead of printing them (the Reporter interface it calls); with a
    ``follower`` (``--follow``) the log stream's lines go to it as in ``tunix-rt wait --follow``."""

    def __init__(self, follower: Any = None) -> None:
        self.events: list[str] = []
        self.follower = follower

    def add_secrets(self, secrets: tuple[str, ...]) -> None:
        pass

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        self.events.append(event)

    def warn(self, message: str) -> None:
        self.events.append("warning")

    def status_line(self, text: str, key: str) -> None:
        pass

    def close_status(self) -> None:
        pass


def simulate(finish_s: float, *, queue_s: float, stream: bool, stream_cut_s: float | None,
             log_end_lead_s: float = 0.0, poll_min: float | None = None,
             poll_max: float | None = None, sign_in_calls: int = 1,
             follow_every_s: float | None = None, metric_every: int = 10) -> dict[str, Any]:
    """Drive the real ``wait()`` over one simulated session; return its calls and detection lag.
    ``follow_every_s``: ``wait --follow`` on a session that logs a line this often."""
    import io

    from tunix_rt import log_stream as stream_mod
    from tunix_rt import wait as wait_mod
    from tunix_rt.follow import Follower
    from tunix_rt.runstate import KaggleRecord, RunState

    clock = SimClock()
    event_cls = type("Event", (SimEvent,), {"clock": clock})
    thread_cls = type("Thread", (SimThread,), {"clock": clock})
    session = Session(finish_s, queue_s, stream_cut_s, log_end_lead_s, follow_every_s, metric_every)
    status_client = SimClient(clock, session, sign_in_calls)
    stream_client = SimClient(clock, session, sign_in_calls)
    base = wait_mod.WaitOptions()
    opts = wait_mod.WaitOptions(timeout=None, poll_min=poll_min or base.poll_min,
                                poll_max=poll_max or base.poll_max, stale_grace_s=base.stale_grace_s,
                                log_stream=stream)
    real_time, real_stream_time, real_threading = wait_mod.time, stream_mod.time, stream_mod.threading
    real_drain, drains = stream_mod.LogStreamWatch.drain, [0]

    def counted_drain(watch: Any, *args: Any, **kwargs: Any) -> None:  # the real drain, its connections counted
        before = watch.connects
        real_drain(watch, *args, **kwargs)
        drains[0] += watch.connects - before

    stream_mod.LogStreamWatch.drain = counted_drain  # type: ignore[method-assign]
    wait_mod.time = stream_mod.time = clock  # type: ignore[assignment]
    stream_mod.threading = types.SimpleNamespace(Event=event_cls, Thread=thread_cls)  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="tunix-rt-wait-bench-") as tmp:
            state = RunState.new(Path(tmp))
            state.kaggle = KaggleRecord(kernel_ref="bench/sim", version_number=1, pushed_at_epoch=T0,
                                        session_timeout_s=9 * 3600 + 600)
            shown = io.StringIO()
            follower = (Follower("json", command="wait", out=shown, clock=clock.monotonic)
                        if follow_every_s else None)
            reporter = _QuietReporter(follower)
            code = wait_mod.wait(state, opts, lambda: status_client, reporter,  # type: ignore[arg-type]
                                 (lambda: stream_client) if stream else None).exit_code
            recorded_calls = state.kaggle.wait_api_calls
            stream_stats = state.kaggle.log_stream or {}
    finally:
        wait_mod.time, stream_mod.time, stream_mod.threading = real_time, real_stream_time, real_threading
        stream_mod.LogStreamWatch.drain = real_drain  # type: ignore[method-assign]
        for s in clock.streams:  # never leave a watcher thread blocked
            s.release_and_join()
    seen = status_client.complete_seen_at
    follow: dict[str, Any] = {}
    if follow_every_s:
        kinds = [json.loads(line)["event"] for line in shown.getvalue().splitlines()]
        follow = {"lines_logged": len(stream_client._log), "lines_shown": len(kinds),
                  "metric_events": kinds.count("metric"), "drain_calls": drains[0]}
    return {
        "finish_s": finish_s, "exit_code": code,
        "status_calls": status_client.calls - sign_in_calls,
        "stream_calls": stream_client.calls - sign_in_calls if stream else 0,
        "sign_in_calls": sign_in_calls * (2 if stream else 1),
        "calls": status_client.calls + (stream_client.calls if stream else 0),
        "wait_recorded_calls": recorded_calls,
        "lag_s": None if seen is None else seen - finish_s,
        "log_stream_wakeups": reporter.events.count("log_stream_ended"),
        "stream_cuts": stream_stats.get("cuts", 0), "stream_gave_up": stream_stats.get("gave_up", False),
        **follow,
    }


def fixed_interval(finish_s: float, every_s: float) -> dict[str, Any]:
    """A fixed-interval poller (GitHub actions): a call at 0, N, 2N, …; the first at/after finish sees it."""
    polls = math.ceil(finish_s / every_s)
    return {"finish_s": finish_s, "calls": polls + 1, "lag_s": polls * every_s - finish_s}


def finish_times(runs: int, hours: float, seed: int) -> list[float]:
    """``runs`` finish times over (0, hours]: one per equal slice, jittered; the last exactly ``hours``."""
    rng = random.Random(seed)
    total = hours * 3600
    width = total / runs
    times = [min(total, (i + rng.random()) * width) for i in range(runs - 1)]
    return [*times, total]


def summarise(name: str, rows: list[dict[str, Any]], hours: float) -> dict[str, Any]:
    full = max(rows, key=lambda r: r["finish_s"])
    lags = [r["lag_s"] for r in rows if r["lag_s"] is not None]
    per_hour = [r["calls"] / (r["finish_s"] / 3600) for r in rows if r["finish_s"] >= 3600]
    followed = [r for r in rows if "lines_logged" in r]
    follow = {"lines_shown_once": all(r["lines_shown"] == r["lines_logged"] for r in followed),
              "lines_logged_full_run": full["lines_logged"], "metric_events_full_run": full["metric_events"],
              "drain_calls_total": sum(r["drain_calls"] for r in followed)} if followed else {}
    split = {k: full[k] for k in ("status_calls", "stream_calls", "sign_in_calls") if k in full}
    return {
        "scenario": name, **split, **follow,
        "calls_full_run": full["calls"],
        "calls_median": median(r["calls"] for r in rows), "calls_max": max(r["calls"] for r in rows),
        "calls_per_hour_median": median(per_hour),
        "lag_median_s": median(lags), "lag_max_s": max(lags) if lags else None,
        "undetected": sum(1 for r in rows if r["lag_s"] is None),
        "goal_met": full["calls"] <= GOAL_CALLS_9H * hours / 9 and bool(lags) and max(lags) <= GOAL_LAG_S
        and all(r["lag_s"] is not None for r in rows) and follow.get("lines_shown_once", True),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=120, help="finish times to simulate (default 120)")
    p.add_argument("--hours", type=float, default=9.0, help="longest run, hours (default 9)")
    p.add_argument("--queue-s", type=float, default=30.0, help="seconds a session stays QUEUED (default 30)")
    p.add_argument("--stream-cut-s", type=float, default=180.0,
                   help="the load balancer cuts the log stream this often (default 180: Kaggle's ~3-minute "
                        "idle timeout, kaggle-cli PR #999, for a session that logs nothing)")
    p.add_argument("--log-end-lead-s", type=float, default=2.0,
                   help="the log stream ends this long before the status turns COMPLETE (default 2)")
    p.add_argument("--sign-in-calls", type=int, default=1,
                   help="calls a fresh connection spends signing in, per client (1: an API token's "
                        "IntrospectToken, or a legacy key's credential check; default 1)")
    p.add_argument("--seed", type=int, default=5, help="seed of the finish-time jitter")
    p.add_argument("--follow", action="store_true",
                   help="also run the log-stream scenarios as `tunix-rt wait --follow` (a session that logs)")
    p.add_argument("--log-every-s", type=float, default=30.0,
                   help="--follow: the session prints a line this often (default 30)")
    p.add_argument("--metric-every", type=int, default=10,
                   help="--follow: every n-th line is a TUNIX_RT_METRIC line (default 10)")
    out_arg(p)
    args = p.parse_args(argv)
    finishes = finish_times(args.runs, args.hours, args.seed)
    scenarios: dict[str, list[dict[str, Any]]] = {
        f"tunix-rt (log stream, cut every {args.stream_cut_s:g} s)": [
            simulate(f, queue_s=args.queue_s, stream=True, stream_cut_s=args.stream_cut_s,
                     log_end_lead_s=args.log_end_lead_s, sign_in_calls=args.sign_in_calls) for f in finishes],
        "tunix-rt (log stream, never cut)": [
            simulate(f, queue_s=args.queue_s, stream=True, stream_cut_s=None, log_end_lead_s=args.log_end_lead_s,
                     sign_in_calls=args.sign_in_calls) for f in finishes],
        **({
            f"tunix-rt --follow (log stream, cut every {args.stream_cut_s:g} s)": [
                simulate(f, queue_s=args.queue_s, stream=True, stream_cut_s=args.stream_cut_s,
                         log_end_lead_s=args.log_end_lead_s, sign_in_calls=args.sign_in_calls,
                         follow_every_s=args.log_every_s, metric_every=args.metric_every) for f in finishes],
            "tunix-rt --follow (log stream, never cut)": [
                simulate(f, queue_s=args.queue_s, stream=True, stream_cut_s=None,
                         log_end_lead_s=args.log_end_lead_s, sign_in_calls=args.sign_in_calls,
                         follow_every_s=args.log_every_s, metric_every=args.metric_every) for f in finishes],
        } if args.follow else {}),
        "tunix-rt (polling only)": [simulate(f, queue_s=args.queue_s, stream=False, stream_cut_s=None,
                                             sign_in_calls=args.sign_in_calls) for f in finishes],
        "fixed 10 s (GitHub actions)": [fixed_interval(f, 10) for f in finishes],
        "fixed 15 s (GitHub actions)": [fixed_interval(f, 15) for f in finishes],
    }
    summary = [summarise(name, rows, args.hours) for name, rows in scenarios.items()]
    print(f"{args.runs} finish times over 0-{args.hours:g} h (queue {args.queue_s:g} s); "
          f"goal: <= {GOAL_CALLS_9H * args.hours / 9:.0f} calls for the {args.hours:g} h run, "
          f"lag <= {GOAL_LAG_S:g} s")
    print(table(["scenario", f"calls {args.hours:g} h", "calls/h med", "lag med s", "lag max s", "goal"],
                [(s["scenario"], s["calls_full_run"], s["calls_per_hour_median"], s["lag_median_s"],
                  s["lag_max_s"], "met" if s["goal_met"] else "MISSED") for s in summary]))
    print(f"\ncalls of the {args.hours:g} h run by kind" + (f"; --follow: a line every {args.log_every_s:g} s, "
                                                            "every line shown once?" if args.follow else ""))
    print(table(["scenario", "status", "stream", "sign-in", "total", "drains", "lines", "shown once"],
                [(s["scenario"], s["status_calls"], s["stream_calls"], s["sign_in_calls"], s["calls_full_run"],
                  s.get("drain_calls_total"), s.get("lines_logged_full_run"),
                  {True: "yes", False: "NO"}.get(s.get("lines_shown_once"), "-"))
                 for s in summary if "status_calls" in s]))
    path = write_result(args.out, "wait_cost", {
        "params": {"runs": args.runs, "hours": args.hours, "queue_s": args.queue_s,
                   "stream_cut_s": args.stream_cut_s, "log_end_lead_s": args.log_end_lead_s,
                   "sign_in_calls": args.sign_in_calls, "follow": args.follow,
                   "log_every_s": args.log_every_s if args.follow else None,
                   "metric_every": args.metric_every if args.follow else None,
                   "seed": args.seed},
        "summary": summary,
        "full_run_rows": {name: max(rows, key=lambda r: r["finish_s"]) for name, rows in scenarios.items()},
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
