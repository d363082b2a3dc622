"""The sweep scheduler: a grid of points as concurrent Kaggle kernels, one poller, one API-call budget.

Each point is a normal run (runners/kaggle.py stages through the engine, engine.py) in its own run directory
``DIR/<point id>/``, with its own run_state.json; the scheduler only decides *when* each stage of a point runs:

* **push** (``preflight`` → ``bundle`` → ``push``) while fewer than ``--max-concurrent`` of the sweep's
  sessions are running;
* **wait**: one poller for all running points. Status calls follow the single-run schedule of wait.py (5 s,
  ×1.5 up to ``--poll-max``) *across* the points, round robin: with N points running each is asked every
  N intervals, so the sweep spends the status calls of one run, not N. What tells the end at once is each
  running point's log stream (log_stream.py, as ``run`` uses it: one connection per point, ~one reconnect per
  idle cut of ~3 minutes): when one ends, that point is asked next; while every stream watches, the status
  cap doubles as in wait.py. Without streams (``--no-log-stream``, or given up) a point's end is seen at most
  N × poll-max late;
* **finish** (``wait`` recorded → ``pull`` → ``evidence`` → ``validate`` → ``package``) as soon as its
  version ended, then the freed slot takes the next point.

**The concurrent-session limit.** Kaggle refuses a push in-band when the account's batch sessions are all in
use: ``{"error": "Maximum batch GPU session count of 4 reached"}`` — the CLI prints it as "Kernel push error:
Maximum batch GPU session count of 4 reached" (kaggle-cli issue #185; adapter-hub/playground PR #4 handles
"Maximum batch GPU session count of 2 reached."); #185 also shows cancelled sessions still counting for a
while. Such a refusal creates no version (push.py clears its attempt), so it is not a failure: the point
goes back to the queue and is pushed again when one of the sweep's sessions ends, or — when none of ours is
running (other sessions of the account hold the slots) — after a backoff (``poll_max``, doubling, ≤ 10 min).

**Resumable, Ctrl-C safe.** Everything a point did is in its run state (push records its attempt before
SaveKernel, the wait each status change, every stage its record), so rerunning the same command never pushes
a point twice (the push stage skips a pushed run; an attempt whose answer was lost is looked up first) and
resumes each point where it stopped: waiting ones are polled again, ended ones are pulled. One failed point
does not stop the others; the sweep's exit code is 0 only when every point completed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import BaseStage, Context, Stage, StageResult, run_flow
from .errors import EXIT_AUTH, EXIT_KERNEL_FAILED, EXIT_OK, EXIT_TIMEOUT, TunixRtError
from .kernel_status import KernelStatus
from .log_stream import LogStreamWatch
from .progress import Reporter
from .runners.kaggle import KaggleRunner, PullStage
from .runstate import RunState
from .stages import EvidenceStage, PackageStage, ValidateStage
from .sweep_plan import PlannedPoint, SweepPlan
from .wait import VersionWait, WaitOptions, WaitResult, finished, interval

# kaggle-cli #185 ("Maximum batch GPU session count of 4 reached"); the word is GPU there, TPU/CPU by analogy.
SESSION_LIMIT = re.compile(r"Maximum batch (\w+) session count of (\d+) reached", re.IGNORECASE)
MAX_BACKOFF_S = 600.0
STREAM_LOOK_S = 1.0  # while log streams are open, the poller looks at them this often (no API call)

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"


def session_limit(message: str | None) -> int | None:
    """The limit named by a push refused for the concurrent-session count (None: another refusal)."""
    match = SESSION_LIMIT.search(message or "")
    return int(match.group(2)) if match else None


def ended_badly(state: RunState) -> str | None:
    """Why a point's pushed version is final and not complete (Kaggle ended it in ERROR or cancelled it, or
    its outputs show no complete run); None otherwise. A rerun of the sweep does not run such a point again."""
    kaggle = state.kaggle
    if kaggle is None or not kaggle.pushed or not finished(kaggle):
        return None
    if kaggle.status != KernelStatus.COMPLETE:
        return f"Kaggle {kaggle.status}" + (f": {kaggle.failure_message}" if kaggle.failure_message else "")
    evidence = state.stage("evidence")
    if evidence is not None and evidence.details.get("evidence_status") == "failed":
        return "evidence: the run did not complete"
    return None


def point_status(state: RunState) -> tuple[str, str | None]:
    """completed | failed | ended (not pulled yet) | running | pending, and the failure's one line (a stage
    that failed for a reason a rerun may fix — an interruption, an API failure — shows as failed until then)."""
    if state.done("package"):
        return COMPLETED, None
    final = ended_badly(state)
    if final is not None:
        return FAILED, final
    for name, record in state.stages.items():
        if record.status == "failed":
            error = record.details.get("error") or record.details.get("first")
            if name == "push" and session_limit(str(error)) is not None:
                return PENDING, None  # refused for the session limit: waiting for a slot
            return FAILED, f"{name}: {error}" if error else name
    kaggle = state.kaggle
    if kaggle is not None and kaggle.pushed:
        return (RUNNING, None) if not finished(kaggle) else ("ended", None)
    return PENDING, None


class PointReporter:
    """The sweep's reporter for one point: its messages start with ``[<point id>]``, its JSON events carry
    ``point``; everything else (secrets, redactor, stream) is the sweep's."""

    def __init__(self, parent: Reporter, point: str) -> None:
        self._parent, self.point = parent, point

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parent, name)

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        self._parent.event(event, f"[{self.point}] {message}" if message else "", point=self.point, **fields)

    def warn(self, message: str) -> None:
        self._parent.warn(f"[{self.point}] {message}")

    def status_line(self, text: str, key: str) -> None:  # the sweep draws the one status line
        return None


class _PointClient:
    """The sweep's one API client, counting the calls made for one point (VersionWait reads ``calls``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.sign_in_calls = -1  # never "fresh": a resumed wait keeps the count its state holds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def status(self, kernel_ref: str, version: int | None) -> tuple[str, str]:
        before = self._client.calls
        try:
            return self._client.status(kernel_ref, version)
        finally:
            self.calls += self._client.calls - before


class PolledWaitStage(BaseStage):
    """The ``wait`` stage of a point the sweep's poller watched: records how the version ended."""

    name = "wait"

    def __init__(self, result: WaitResult) -> None:
        self.result = result

    def run(self, ctx: Context) -> StageResult:
        r = self.result  # VersionWait.result() said how it ended
        return StageResult({"kaggle_status": str(r.status), "api_calls": r.api_calls}, value=r)


@dataclass
class PointRun:
    """One point in the scheduler: its run (context), where it stands, and how it ended."""

    planned: PlannedPoint
    ctx: Context
    phase: str = PENDING
    waiter: VersionWait | None = None
    exit_code: int | None = None
    error: str | None = None
    refusals: int = 0
    last_poll: int = 0  # the poller's turn number when this point was last asked (0: never)
    stream_noticed: bool = False  # its log stream said the session ended (noticed once)
    poll_first: bool = False  # ... and no poll has asked since: it is asked next

    @property
    def id(self) -> str:
        return self.planned.id


@dataclass(frozen=True)
class SweepOptions:
    """``--max-concurrent``, ``--timeout`` (the whole sweep's deadline), the poll schedule, ``--output``."""

    max_concurrent: int = 2
    timeout: float | None = None
    wait: WaitOptions = field(default_factory=lambda: WaitOptions(log_stream=False))
    output: Path = Path("submission")


@dataclass(frozen=True)
class SweepOutcome:
    """How the sweep ended: its exit code and one line, the points, and the API calls it spent."""

    exit_code: int
    message: str
    points: list[PointRun]
    api_calls: int
    pushes: int
    landed: int
    refusals: int


class Scheduler:
    """Runs a :class:`SweepPlan` (see the module docstring)."""

    def __init__(self, plan: SweepPlan, runner: KaggleRunner, reporter: Reporter, options: SweepOptions, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.plan, self.runner, self.reporter, self.options = plan, runner, reporter, options
        self.clock, self.sleep = clock, sleep
        self.start = clock()
        self.deadline = self.start + options.timeout if options.timeout else None
        self.points = [self._load(p) for p in plan.points]
        self.blocked_until: float | None = None  # pushes wait: until then (a time) or, inf, a session's end
        self.backoff = options.wait.poll_max
        self.next_poll = 0.0
        self.k = 0
        self.polls = 0
        self.pushes = 0  # SaveKernel calls of this command that made a version
        self.landed = 0  # versions an earlier command's push made, found and adopted
        self.refusals = 0
        self._client: Any = None

    # --- setup -------------------------------------------------------------------------------------
    def _load(self, planned: PlannedPoint) -> PointRun:
        reporter: Any = PointReporter(self.reporter, planned.id)
        point = PointRun(planned, Context(RunState.read(planned.run_dir), reporter, resume=True))
        state = point.ctx.state
        kaggle = state.kaggle
        final = ended_badly(state)
        if state.done("package"):
            point.phase, point.exit_code = COMPLETED, EXIT_OK
        elif final is not None:  # its end is final: not pulled or checked again
            point.phase, point.exit_code, point.error = FAILED, EXIT_KERNEL_FAILED, final
        elif kaggle is not None and kaggle.pushed and not kaggle.push_error:
            point.phase = RUNNING  # waiting, or ended and not yet pulled: the poll loop finishes it
        return point

    def client(self, point: PointRun) -> Any:
        client = self.runner.client(point.ctx)
        self._client = client
        return client

    def _api_calls(self) -> int:
        """The API calls of the sweep's one Kaggle client so far (0 before it signed in)."""
        return self._client.calls if self._client is not None else 0

    def running(self) -> list[PointRun]:
        return [p for p in self.points if p.phase == RUNNING]

    def pending(self) -> list[PointRun]:
        return [p for p in self.points if p.phase == PENDING]

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> SweepOutcome:
        """Push, poll and finish until every point completed or failed (or the deadline passed)."""
        done = sum(p.phase == COMPLETED for p in self.points)
        self.reporter.event("sweep_started", f"sweep: {len(self.points)} points ({done} completed before), at "
                            f"most {self.options.max_concurrent} running at once", points=len(self.points),
                            completed_before=done, max_concurrent=self.options.max_concurrent)
        for point in self.running():
            self._start_waiting(point)
        try:
            while self.running() or self.pending():
                if self.deadline is not None and self.clock() >= self.deadline:
                    break
                self._push_free_slots()
                self._poll_or_sleep()
        finally:
            self.reporter.close_status()
        return self._outcome()

    def _can_push(self) -> bool:
        if len(self.running()) >= self.options.max_concurrent:
            return False
        return self.blocked_until is None or self.clock() >= self.blocked_until

    def _push_free_slots(self) -> None:
        for point in self.pending():
            if not self._can_push():
                return
            self._push(point)

    def _push(self, point: PointRun) -> None:
        stages = self.runner.push_stages(point.planned.inputs(self.plan.config, self.plan.mode,
                                                              self.plan.accelerator))
        if point.refusals and "preflight" in point.ctx.values:
            stages = stages[-1:]  # refused for a slot: the checks and the bundle of the last try still hold
        try:
            flow = run_flow(stages, point.ctx)
        except TunixRtError as exc:
            if exc.exit_code == EXIT_AUTH:
                raise  # missing or rejected credentials: no point can go on
            limit = session_limit(exc.message)
            if limit is None:
                self._fail(point, exc.exit_code, exc.message)
                return
            self._refused(point, limit, exc.message)
            return
        if flow.exit_code != EXIT_OK:
            self._fail(point, flow.exit_code, flow.error or "the push stopped")
            return
        pushed = flow.values.get("push")
        if pushed is not None and pushed.how == "pushed":
            self.pushes += 1
        elif pushed is not None:  # an earlier, killed command's push reached Kaggle: adopted, not pushed again
            self.landed += 1
        self.blocked_until, self.backoff = None, self.options.wait.poll_max
        point.phase = RUNNING
        self._start_waiting(point)

    def _refused(self, point: PointRun, limit: int, message: str) -> None:
        """A push refused for the concurrent-session limit: the point waits for a slot (not a failure)."""
        point.refusals += 1
        self.refusals += 1
        ours = len(self.running())
        if ours:
            self.blocked_until = float("inf")  # until one of ours ends
            when = "when one of the sweep's sessions ends"
        else:  # other sessions of the account hold the slots: try again later
            self.blocked_until = self.clock() + self.backoff
            when = f"in {self.backoff:.0f} s"
            self.backoff = min(MAX_BACKOFF_S, self.backoff * 2)
        point.ctx.reporter.event("push_deferred", f"Kaggle's concurrent-session limit ({limit}) is reached; "
                                 f"pushing again {when}", limit=limit, running=ours, refusal=message)

    def _start_waiting(self, point: PointRun) -> None:
        client = _PointClient(self.client(point))
        kaggle = point.ctx.state.kaggle
        opts, factory = self.options.wait, self.runner.stream_factory
        watch = (LogStreamWatch(factory, str(kaggle.kernel_ref), int(kaggle.version_number or 0),
                                opts.stream_served_s)
                 if opts.log_stream and factory is not None and kaggle is not None and not finished(kaggle) else None)
        point.waiter = VersionWait(point.ctx.state, opts, client, point.ctx.reporter, watch)
        if finished(point.waiter.kaggle):  # an earlier command saw the end: finish at once
            self._finish(point, point.waiter.result())
            return
        point.last_poll = 0
        self.k, self.next_poll = 0, min(self.next_poll, self.clock())

    def _watches(self, running: list[PointRun]) -> list[tuple[PointRun, LogStreamWatch]]:
        return [(p, p.waiter.watch) for p in running if p.waiter is not None and p.waiter.watch is not None]

    def _poll_or_sleep(self) -> None:
        running = self.running()
        watches = self._watches(running)
        for point, watch in watches:
            watch.signal.clear()
            if watch.ended.is_set() and not point.stream_noticed:  # the session is over: ask at once
                point.stream_noticed = point.poll_first = True
                self.k, self.next_poll = 0, self.clock()
            elif point.waiter is not None and point.waiter.kaggle.status == KernelStatus.RUNNING:
                watch.poke()  # (re)connect when due: before RUNNING there is no session to stream
        now = self.clock()
        wake = self.next_poll if running else float("inf")
        if self.pending() and self.blocked_until is not None and len(running) < self.options.max_concurrent:
            wake = min(wake, self.blocked_until)
        for point, watch in watches:  # a reconnect that falls due wakes the loop (only while RUNNING: it pokes)
            due = watch.due_in()
            if due is not None and watch.connects and point.waiter is not None \
                    and point.waiter.kaggle.status == KernelStatus.RUNNING:
                wake = min(wake, now + max(due, 0.05))
        if self.deadline is not None:
            wake = min(wake, self.deadline)
        if wake > now:
            self._status_line(wake - now)
            if wake == float("inf"):  # nothing to poll and nothing may be pushed: cannot happen
                raise AssertionError("sweep scheduler: nothing to wait for")
            self._pause(wake - now, [w for _, w in watches])
            return
        if not running or now < self.next_poll:
            return
        # A point whose log stream said the session ended first, then round robin: the longest unasked.
        point = min(running, key=lambda p: (not p.poll_first, p.last_poll))
        self._poll(point)

    def _pause(self, seconds: float, watches: list[LogStreamWatch]) -> None:
        """Sleep, waking early when a log stream's connection ends (the session may be over)."""
        if not watches:
            self.sleep(seconds)
            return
        until = self.clock() + seconds
        while (left := until - self.clock()) > 0 and not any(w.signal.is_set() for w in watches):
            self.sleep(min(left, STREAM_LOOK_S))

    def _poll(self, point: PointRun) -> None:
        waiter = point.waiter
        assert waiter is not None
        before = waiter.kaggle.status
        try:
            poll = waiter.poll()
        except TunixRtError as exc:
            point.ctx.state.mark("wait", "failed", error=exc.message)
            point.ctx.state.write()
            self._fail(point, exc.exit_code, exc.message)
            return
        self.polls += 1
        point.poll_first = False
        point.last_poll = self.polls  # round robin by turn, not by time (two polls can share a clock reading)
        self.k = 0 if poll.status != before else self.k + 1
        wait = self.options.wait
        streams = self._watches(self.running())
        # While every running point's log stream watches for the end, the status poll is a safety net (wait.py).
        cap = wait.poll_max * 2 if streams and all(w.in_use for _, w in streams) else wait.poll_max
        self.next_poll = self.clock() + interval(self.k, wait.poll_min, cap)
        if poll.done:
            self._finish(point, waiter.result())

    def _finish(self, point: PointRun, result: WaitResult) -> None:
        """wait (recorded) → pull → evidence → validate → package; the slot is free either way."""
        point.waiter = None
        self.blocked_until, self.backoff = None, self.options.wait.poll_max  # a slot is free: push again
        stages: list[Stage] = [PolledWaitStage(result), PullStage(self.runner), EvidenceStage(), ValidateStage(),
                               PackageStage(self.options.output)]
        try:
            flow = run_flow(stages, point.ctx)
        except TunixRtError as exc:
            self._fail(point, exc.exit_code, exc.message)
            return
        if flow.exit_code != EXIT_OK:
            self._fail(point, flow.exit_code, flow.error or "the run did not complete")
            return
        point.phase, point.exit_code = COMPLETED, EXIT_OK
        pkg = point.ctx.state.stage("package")
        point.ctx.reporter.event("point_completed", f"completed: {pkg.details.get('zip') if pkg else ''}",
                                 zip=pkg.details.get("zip") if pkg else None)

    def _fail(self, point: PointRun, code: int, message: str) -> None:
        was_running = point.phase == RUNNING
        point.phase, point.exit_code, point.error, point.waiter = FAILED, code, message, None
        if was_running:
            self.blocked_until, self.backoff = None, self.options.wait.poll_max
        point.ctx.reporter.event("point_failed", f"failed (exit {code}): {message}", exit_code=code, error=message)

    def _status_line(self, pause: float) -> None:
        counts = {phase: sum(p.phase == phase for p in self.points) for phase in (RUNNING, PENDING, COMPLETED,
                                                                                  FAILED)}
        calls = self._api_calls()
        text = (f"sweep: {counts[RUNNING]} running, {counts[PENDING]} pending, {counts[COMPLETED]} completed, "
                f"{counts[FAILED]} failed; next look in {pause:.0f} s ({calls} API calls)")
        self.reporter.status_line(text, key=f"{counts}")

    # --- the end -----------------------------------------------------------------------------------
    def _outcome(self) -> SweepOutcome:
        calls = self._api_calls()
        failed = [p for p in self.points if p.phase == FAILED]
        left = [p for p in self.points if p.phase in (PENDING, RUNNING)]
        completed = len(self.points) - len(failed) - len(left)
        summary = f"{completed}/{len(self.points)} points completed"
        if failed:
            codes = {p.exit_code or EXIT_KERNEL_FAILED for p in failed}
            code = codes.pop() if len(codes) == 1 else EXIT_KERNEL_FAILED
            message = f"{summary}; failed: " + "; ".join(f"{p.id} ({p.error})" for p in failed)
        elif left:
            code = EXIT_TIMEOUT
            message = (f"{summary}; the sweep's deadline passed with {len(left)} point(s) not finished (running "
                       "kernels keep running on Kaggle): run the same command again to resume")
        else:
            code, message = EXIT_OK, summary
        return SweepOutcome(code, message, self.points, calls, self.pushes, self.landed, self.refusals)
