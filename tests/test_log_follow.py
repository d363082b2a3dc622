"""automation/log_follow.py (``wait``/``run --follow``): the Kaggle log stream's events become the follower's
lines — chunks cut into lines per stream, ``\\r`` folded, stderr prefixed, credentials redacted, replayed events
after a cut skipped — and, end to end against the emulator, they arrive while the kernel runs."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import write_kernel
from kaggle_e2e_helpers import (
    FAKE_KEY,
    REF,
    USER,
    cli_env,
    make_bundle,
    push_args,
    state,
    training_outputs,
    tunix_rt,
)
from tunix_rt.emulator import Emulator, KaggleBehaviour
from tunix_rt.emulator.executor import Job, Result
from tunix_rt.emulator.kaggle_log import KaggleLogWriter, parse
from tunix_rt.follow import Follower
from tunix_rt.kaggle_client import connect
from tunix_rt.log_follow import StreamFeed
from tunix_rt.log_stream import LogStreamWatch
from tunix_rt.training.metric_line import format_line

SECRET = "KGAT_" + "0123456789abcdef" * 2  # the shape of a Kaggle API token: redacted wherever it shows up


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def _metric(step: int, total: int = 3) -> str:
    return format_line({"step": step, "total_steps": total, "loss": 4.0 - step, "tokens_per_second": 50.0 * step,
                        "elapsed_s": float(step), "eta_s": float(total - step), "device_kind": "cpu"})


def _follower(out: io.StringIO) -> Follower:
    return Follower("json", command="wait", out=out, clock=Clock())


def _events(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# ----------------------------------------------------------------------------------------- the feed alone


def test_chunks_become_lines_per_stream_folded_prefixed_and_redacted() -> None:
    out = io.StringIO()
    feed = StreamFeed(_follower(out))
    for stream, data in [("stdout", "loading the mod"), ("stderr", "warn"), ("stdout", "el\nprogress 10%\r"),
                         ("stdout", "progress 90%\rprogress 100%\n"), ("stderr", "ing: slow\n"),
                         ("stdout", f"token {SECRET}\n{_metric(1)}\n"), ("stdout", "no newline at the end")]:
        feed({"stream_name": stream, "time": 0.5, "data": data})
    feed({"stream_name": "stdout", "time": 0.6, "data": ""})  # empty chunks and odd events are ignored
    feed({"time": 0.7})
    assert feed.events == 7
    feed.close()
    events = _events(out)
    assert [e.get("line") for e in events if e["event"] == "log"] == [
        "loading the model", "progress 100%", "[stderr] warning: slow", "token [REDACTED]",
        "no newline at the end"]
    (metric,) = [e for e in events if e["event"] == "metric"]
    assert (metric["step"], metric["loss"], metric["tokens_per_second"]) == (1, 3.0, 50.0)
    assert SECRET not in out.getvalue()


def test_the_clients_fallback_events_are_whole_lines() -> None:
    """kaggle 2.2.5 yields ``{"data": line}`` for an SSE payload that is not JSON and for each line of a blob
    it cannot parse: no stream name, no newline — each is one line."""
    out = io.StringIO()
    feed = StreamFeed(_follower(out))
    feed({"data": "first"})
    feed({"data": "second\n"})
    feed.close()
    assert [e["line"] for e in _events(out)] == ["first", "second"]


# --------------------------------------------------------------- the feed on the emulator's real stream


class SteppedKernel:
    """An emulator ``execute_fn`` that writes its log in steps the test releases one by one, so the stream
    sees lines between the load balancer's idle cuts (and a reconnect replays them)."""

    def __init__(self, steps: list[list[tuple[str, str]]]) -> None:
        self.steps = steps
        self.go = [threading.Event() for _ in steps]
        self.written = [threading.Event() for _ in steps]
        self.started = threading.Event()

    def __call__(self, job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
        start = time.monotonic()
        self.started.set()
        for chunks, go, written in zip(self.steps, self.go, self.written, strict=True):
            while not go.wait(0.05):
                if stop.is_set():
                    return Result(False, "stopped")
            for stream, data in chunks:
                log.write(stream, time.monotonic() - start, data)
            written.set()
        return Result(True)


def drive(watch: LogStreamWatch, until: float, stop: threading.Event | None = None) -> None:
    """What wait.py does between polls: wake on each connection's end, reconnect when due."""
    while not watch.ended.is_set() and not watch.gave_up and time.monotonic() < until:
        if stop is not None and stop.is_set():
            return
        watch.poke()
        due = watch.due_in()
        watch.signal.wait(0.05 if due is None else max(0.0, min(0.05, due)))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")


def test_lines_between_idle_cuts_are_shown_once_in_order(tmp_path: Path, env: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = SteppedKernel([
        [("stdout", "step one st"), ("stdout", "arts\n"), ("stderr", f"secret {SECRET}\n")],
        [("stdout", "bar 1/3\rbar 2/3\rbar 3/3\n"), ("stdout", _metric(1) + "\n")],
        [("stdout", _metric(3) + "\n"), ("stdout", "done\n")],
    ])
    with Emulator(tmp_path / "k", queue_seconds=0.1, execute_fn=kernel,
                  behaviour=KaggleBehaviour(stream_idle_cut_s=0.3)) as emu:
        for key, value in emu.client_env().items():
            monkeypatch.setenv(key, value)
        folder = write_kernel(tmp_path / "kern", "alice/follow-kern", "print('x')\n", kernel_type="script")
        connect(verify=False).api.kernels_push(str(folder))
        assert kernel.started.wait(30)
        out = io.StringIO()
        feed = StreamFeed(_follower(out))
        watch = LogStreamWatch(lambda: connect(verify=False), "alice/follow-kern", 1, served_s=0.2, on_event=feed)
        for go, written in zip(kernel.go, kernel.written, strict=True):
            cuts = watch.cuts
            go.set()
            assert written.wait(30)
            drive(watch, time.monotonic() + 30, stop=_after_cuts(watch, cuts + 2))  # lines, then two idle cuts
        drive(watch, time.monotonic() + 30)
        feed.close()
        assert watch.ended.is_set() and watch.cuts >= 4  # two after each step but the last
        events = _events(out)
        assert [e.get("line") for e in events if e["event"] == "log"] == [
            "step one starts", "[stderr] secret [REDACTED]", "bar 3/3", "done"]
        assert [e["step"] for e in events if e["event"] == "metric"] == [1, 3]
        assert watch.events == feed.events == 7  # the replays after each cut were skipped
        assert len([r for r in emu.calls("logs_stream") if r.fault == "idle_cut"]) == watch.cuts
        assert SECRET not in out.getvalue()


def _after_cuts(watch: LogStreamWatch, n: int) -> threading.Event:
    """An event that is set once ``watch`` has been cut ``n`` times (polled by a helper thread)."""
    done = threading.Event()

    def look() -> None:
        while not done.is_set() and watch.cuts < n and not watch.ended.is_set():
            time.sleep(0.02)
        done.set()

    threading.Thread(target=look, daemon=True).start()
    return done


def test_a_session_that_ended_unseen_is_drained_from_the_persisted_log(tmp_path: Path, env: None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The version ended while no connection was open: one more call answers the finished session's log,
    and only the lines not shown yet are shown."""
    kernel = SteppedKernel([[("stdout", "first\n")], [("stdout", "second\n"), ("stdout", "third")]])
    with Emulator(tmp_path / "k", queue_seconds=0.1, execute_fn=kernel) as emu:
        for key, value in emu.client_env().items():
            monkeypatch.setenv(key, value)
        folder = write_kernel(tmp_path / "kern", "alice/drain-kern", "print('x')\n", kernel_type="script")
        connect(verify=False).api.kernels_push(str(folder))
        assert kernel.started.wait(30)
        out = io.StringIO()
        feed = StreamFeed(_follower(out))
        watch = LogStreamWatch(lambda: connect(verify=False), "alice/drain-kern", 1, on_event=feed)
        kernel.go[0].set()
        assert kernel.written[0].wait(30)
        watch.poke()  # one live connection: it shows "first", then stays open
        deadline = time.monotonic() + 30
        while watch.events < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.events == 1
        kernel.go[1].set()
        watch.drain(join_s=30)  # the session ends: the open connection delivers the rest and END_OF_LOG
        assert watch.ended.is_set() and watch.connects == 1
        fresh = io.StringIO()
        late = StreamFeed(_follower(fresh))
        unseen = LogStreamWatch(lambda: connect(verify=False), "alice/drain-kern", 1, on_event=late)
        unseen.drain()  # never connected while it ran: the persisted log, in one call
        feed.close()
        late.close()
        assert unseen.ended.is_set() and unseen.connects == 1 and unseen.calls == 1
        assert [e["line"] for e in _events(out)] == ["first", "second", "third"]
        assert [e["line"] for e in _events(fresh)] == ["first", "second", "third"]
        assert [r.status for r in emu.calls("logs_stream")] == [200, 200]


# ------------------------------------------------------------------------------------ the CLI, end to end


def test_a_kaggle_verbs_status_and_messages_share_the_one_live_display() -> None:
    """In a terminal ``wait --follow`` has one rich Live (the follower's): the wait's status line shows above
    the training panel and the reporter's messages print above the display, never a second Live."""
    from rich.console import Console
    from tunix_rt.progress import Reporter

    screen = io.StringIO()
    reporter = Reporter("wait", follow=True)
    reporter.follower = Follower("live", command="wait", clock=Clock(), refresh_per_second=20,
                                 console=Console(file=screen, force_terminal=True, width=100, height=20,
                                                 color_system=None))
    with reporter:
        feed = StreamFeed(reporter.follower)
        reporter.status_line("alice/k v1  RUNNING  next poll in 60 s  (7 calls)", key="RUNNING")
        reporter.event("status", "alice/k v1: RUNNING", status="RUNNING")
        feed({"stream_name": "stdout", "time": 1.0, "data": "loading\n" + _metric(2) + "\n"})
        time.sleep(0.2)  # a refresh or two
        assert reporter._live is None  # the reporter's own status display never started
    final = screen.getvalue().rsplit("alice/k v1  RUNNING", 1)[-1]  # the last frame drawn
    assert "2 / 3" in final and "loading" in final and final.index("ETA") < final.index("loading")
    assert "alice/k v1: RUNNING" in screen.getvalue()


def test_wait_follow_after_the_end_shows_the_persisted_log_for_one_stream_call(emu: Emulator, tmp_path: Path,
                                                                               run_dir: Path) -> None:
    """The version ended before the wait ever saw it run: no connection saw END_OF_LOG, so the follower asks
    once more and Kaggle answers the finished session's log."""
    env = cli_env(emu)
    bundle = make_bundle(tmp_path / "bundle", files={"output/x.txt": "x"})
    assert tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu")).code == 0
    deadline = time.monotonic() + 60
    while (v := emu.version(USER, REF.split("/")[1], 1)) is None or v.finished_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    res = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--follow", "--json")
    assert res.code == 0, res.output
    events = res.json_lines()
    lines = [e["line"] for e in events if e["event"] == "log"]
    assert "tiny kernel wrote 1 files" in lines and any(x.startswith("[stderr] ") for x in lines)  # papermill's
    assert events[-1]["event"] == "result" and all("t" in e for e in events)
    kaggle = state(run_dir)["kaggle"]
    stream = kaggle["log_stream"]
    assert stream["connections"] == 1 and stream["ended"]
    assert stream["events"] == len(parse(v.log_path.read_text(encoding="utf-8")))
    status_calls = len(emu.calls("GetKernelSessionStatus"))
    # + the drain's one call + the credential check + one output list: a COMPLETE never seen active is believed
    # only when the version lists files (the stale-status guard, wait.py)
    assert kaggle["wait_api_calls"] == status_calls + 1 + 1 + len(emu.calls("ListKernelSessionOutput"))
    assert len(emu.calls("ListKernelSessionOutput")) == 1
    # Following again once the run state says it ended: no status call, the same log from one stream call.
    streams = len(emu.calls("logs_stream"))
    again = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--follow", "--json")
    assert again.code == 0, again.output
    assert [e["line"] for e in again.json_lines() if e["event"] == "log"] == lines
    assert len(emu.calls("logs_stream")) == streams + 1
    assert len(emu.calls("GetKernelSessionStatus")) == status_calls




def _training_kernel(steps: int, step_s: float) -> str:
    """Notebook code that trains the way the trainer prints: a log line, then ``steps`` steps of ``step_s``
    with a progress bar and a TUNIX_RT_METRIC line each, and reports its own training time in run_result's
    ``timings_s`` (compile = step 1, train = the rest), as training/run.py does."""
    metric = (f"{{'step': s, 'total_steps': {steps}, 'loss': 5.0 / s, 'tokens_per_second': 100.0 * s, "
              f"'elapsed_s': time.perf_counter() - t0, 'eta_s': ({steps} - s) * {step_s!r}, 'device_kind': 'cpu'}}")
    return (
        "import json, pathlib, sys, time\n"
        "print('loading the tiny model', flush=True)\n"
        "time.sleep(1.0)\n"
        # the token is put together at run time: the bundle itself must stay packageable (no credential in it)
        "print('token', 'KGAT_' + '0123456789abcdef' * 2, file=sys.stderr, flush=True)\n"
        "t0 = time.perf_counter(); first = None\n"
        f"for s in range(1, {steps + 1}):\n"
        f"    time.sleep({step_s!r})\n"
        "    print(f'\\rstep {s} 50%', end='', flush=True); print(f'\\rstep {s} 100%', flush=True)\n"
        f"    print('TUNIX_RT_METRIC ' + json.dumps({metric}), flush=True)\n"
        "    first = first or time.perf_counter() - t0\n"
        "training_s = time.perf_counter() - t0\n"
        "p = pathlib.Path('output/run_result.json'); r = json.loads(p.read_text())\n"
        "r['timings_s'].update(compile=round(first, 3), train=round(training_s - first, 3))\n"
        "p.write_text(json.dumps(r))\n"
        "print('training done', flush=True)\n"
    )


def _follow_bundle(tmp_path: Path, run_dir: Path, steps: int, step_s: float) -> Path:
    bundle = make_bundle(tmp_path / "bundle", files=training_outputs(run_dir.name, tmp_path))
    nb_path = bundle / "kaggle_submission.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][-1]["source"] += _training_kernel(steps, step_s)  # after the outputs are written
    nb_path.write_text(json.dumps(nb))
    return bundle


def training_seconds(run_dir: Path) -> float:
    """The kernel's own training time: run_result.json ``timings_s`` compile (step 1) + train (the rest)."""
    result = json.loads((run_dir / "outputs" / "output" / "run_result.json").read_text(encoding="utf-8"))
    timings = result["timings_s"]
    return float(timings["compile"]) + float(timings["train"])


def assert_followed_live(events: list[dict[str, Any]], training_s: float, session_end_epoch: float) -> None:
    """The Done-when of issue 10: log and metric events come before the result by at least the kernel's
    training time — they arrived while the kernel ran, not after it.

    * the first log line (printed before training began) is earlier than the result by ≥ the training time;
    * each metric event is earlier than the result by ≥ the training time still ahead when it was printed
      (training time − its ``elapsed_s``); the first one by ≥ the training time after step 1;
    * every log and metric event came before the emulator ended the session (epoch: result.time − result.t
      is the command's start)."""
    result = events[-1]
    assert result["event"] == "result" and result["exit_code"] == 0, result
    assert all("t" in e for e in events)
    logs = [e for e in events if e["event"] == "log"]
    metrics = [e for e in events if e["event"] == "metric"]
    assert logs and metrics
    assert result["t"] - logs[0]["t"] >= training_s, (logs[0], result["t"], training_s)
    for metric in metrics:
        assert result["t"] - metric["t"] >= training_s - metric["elapsed_s"], (metric, result["t"], training_s)
    start_epoch = result["time"] - result["t"]
    shown = [e for e in events if e["event"] in ("log", "metric")]
    assert all(start_epoch + e["t"] < session_end_epoch for e in shown), (shown[-1], session_end_epoch)


def test_run_follow_json_shows_the_log_and_metrics_while_the_kernel_runs(emu: Emulator, tmp_path: Path,
                                                                        run_dir: Path) -> None:
    steps = 4
    bundle = _follow_bundle(tmp_path, run_dir, steps, 1.0)
    out = tmp_path / "submission"
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, bundle, "cpu"), "--output", str(out), "--follow",
                   "--json", "--poll-min", "0.2", "--poll-max", "1", timeout=240)
    assert res.code == 0, res.output[-4000:]
    events = res.json_lines()
    version = emu.version(USER, REF.split("/")[1], 1)
    assert version is not None and version.finished_at is not None
    assert_followed_live(events, training_seconds(run_dir), version.finished_at)
    lines = [e["line"] for e in events if e["event"] == "log"]
    assert "loading the tiny model" in lines and "training done" in lines
    assert [f"step {s} 100%" for s in range(1, steps + 1)] == [x for x in lines if x.startswith("step ")]
    assert "[stderr] token [REDACTED]" in lines and FAKE_KEY not in res.output and SECRET not in res.output
    metrics = [e for e in events if e["event"] == "metric"]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    assert all({"loss", "tokens_per_second", "t"} <= set(m) for m in metrics)
    assert events.index(metrics[-1]) < events.index(next(e for e in events if e["event"] == "finished"))
    # Following cost no extra call: the wait's status polls and stream connections, as waiting without
    # --follow spends them (run's client signed in before the wait; a legacy key's stream client spends no
    # sign-in call); every log entry was shown once (the stream counted each once).
    st = state(run_dir)
    stream = st["kaggle"]["log_stream"]
    assert stream["ended"] and stream["events"] == len(parse(version.log_path.read_text(encoding="utf-8")))
    status_calls = len(emu.calls("GetKernelSessionStatus"))
    assert st["kaggle"]["wait_api_calls"] == status_calls + stream["connections"]


def test_follow_with_no_log_stream_is_a_usage_error(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    res = tunix_rt(cli_env(emu), "wait", "--run-dir", str(run_dir), "--follow", "--no-log-stream")
    assert res.code == 2 and "--follow" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert emu.calls("GetKernelSessionStatus") == []


@pytest.mark.kernel
@pytest.mark.slow
def test_run_follow_json_on_the_real_bundle(emu: Emulator, repo_root: Path, tmp_path: Path, run_dir: Path) -> None:
    """The Done-when with the real trainer: its TUNIX_RT_METRIC lines and log come through the emulator's live
    log stream while the kernel trains, earlier than the result by at least the training time it reports."""
    res = tunix_rt(cli_env(emu), "run", "--kernel-id", f"{USER}/tunix-rt-follow", "--accelerator", "cpu",
                   "--config", str(repo_root / "training/configs/sft_tiny.yaml"), "--mode", "smoke",
                   "--run-dir", str(run_dir), "--output", str(tmp_path / "submission"), "--follow", "--json",
                   "--poll-min", "1", "--poll-max", "5", timeout=1800)
    assert res.code == 0, res.output[-4000:]
    events = res.json_lines()
    version = emu.version(USER, "tunix-rt-follow", 1)
    assert version is not None and version.finished_at is not None
    assert_followed_live(events, training_seconds(run_dir), version.finished_at)
    metrics = [e for e in events if e["event"] == "metric"]
    logged = [json.loads(line) for line in
              (run_dir / "outputs" / "output" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [m["step"] for m in metrics] == [r["step"] for r in logged]  # the same records as metrics.jsonl
    assert [m["loss"] for m in metrics] == [r["loss"] for r in logged]
    assert metrics[-1]["device_kind"] and metrics[-1]["total_steps"] == logged[-1]["total_steps"]
    assert FAKE_KEY not in res.output
