"""``tunix-rt sweep`` end to end: the CLI in a subprocess, the real kaggle 2.2.5 client, the emulator with a
concurrent-session limit (``max_running``, refusing in-band like Kaggle). The fast tests run fake kernels (the
emulator's ``execute_fn`` writes plausible outputs for the point in a second); the ``kernel`` test trains the
tiny config for real. Unit tests of the scheduler's pieces are at the end."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaggle_e2e_helpers import USER, cli_env, repo_run_dir, training_outputs, tunix_rt, tunix_rt_popen, versions
from tunix_rt.bundle import extract_payload
from tunix_rt.emulator.app import Emulator
from tunix_rt.emulator.behaviour import KaggleBehaviour
from tunix_rt.emulator.executor import Job, Result
from tunix_rt.emulator.kaggle_log import KaggleLogWriter
from tunix_rt.kernel_metadata import tunix_rt_metadata
from tunix_rt.sweep import session_limit
from tunix_rt.validate import validate_run_dir

PREFIX = f"{USER}/tiny-sweep"
GRID = ["--set", "training.learning_rate=0.001,0.003", "--set", "training.smoke_steps=2,3"]
POLL = ["--poll-min", "0.2", "--poll-max", "0.5"]


def sweep_env(emu: Emulator) -> dict[str, str]:
    """The CLI's environment; a killed push's settle window (push.py) shortened to 2 s for the tests."""
    return cli_env(emu, TUNIX_RT_PUSH_SETTLE_S="2")


def sweep_args(sweep_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--kernel-id", PREFIX, "--accelerator", "cpu", "--config", "training/configs/sft_tiny.yaml",
            *GRID, "--run-dir", str(sweep_dir), "--output", str(out), *POLL, *extra]


def fake_kernel(tmp: Path, seconds: float = 1.0, gate: threading.Event | None = None):  # noqa: ANN201
    """An ExecuteFn writing the training outputs of the point whose bundle is pushed (its run_version: the point
    id) after ``seconds``; with ``gate``, not before the test opens it."""
    def run(job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
        while gate is not None and not gate.wait(0.1):
            if stop.is_set():
                return Result(False, "The session was stopped (emulator shut down).")
        params = (tunix_rt_metadata(job.source.read_bytes()) or {}).get("parameters", {})
        files = training_outputs(str(params.get("run_version")), tmp / job.version_dir.parent.name)
        # The point's own config, as the payload ships it: the run result names it (package checks that).
        with tarfile.open(fileobj=io.BytesIO(extract_payload(job.source))) as tar:
            member = tar.extractfile(f"training/{params['config']}")
            assert member is not None
            config_sha = hashlib.sha256(member.read()).hexdigest()
        result = json.loads(files["output/run_result.json"])
        result["config"].update(path=f"training/{params['config']}", sha256=config_sha)
        files["output/run_result.json"] = json.dumps(result)
        if stop.wait(seconds):
            return Result(False, "The session was stopped (emulator shut down).")
        for name, text in files.items():
            path = job.working_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        log.write("stdout", 0.5, "fake kernel wrote its outputs\n")
        return Result(True)

    return run


@pytest.fixture
def sweep_dir() -> Iterator[Path]:
    path = repo_run_dir("sweep")
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


def accepted_pushes(emu: Emulator) -> dict[str, list[int]]:
    """Versions per kernel of the sweep (each accepted SaveKernel is one version)."""
    slugs = {k.slug for k in emu.store.kernels()}
    return {slug: versions(emu, USER, slug) for slug in sorted(slugs)}


def assert_complete_sweep(emu: Emulator, sweep_dir: Path, out: Path, points: int = 4) -> list[dict]:
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    ids = [p["id"] for p in plan["points"]]
    assert len(ids) == points == len(set(ids))
    for pid in ids:
        assert (sweep_dir / pid / "run_state.json").is_file()
        assert validate_run_dir(sweep_dir / pid) == [], pid
    assert len(list(out.glob("*.zip"))) == points
    assert accepted_pushes(emu) == {f"tiny-sweep-{pid}": [1] for pid in sorted(ids)}  # one push per point
    assert 1 <= emu.peak_running(USER) <= 2
    comparison = json.loads((sweep_dir / "comparison.json").read_text())
    rows = comparison["rows"]
    assert len(rows) == points and {r["point"] for r in rows} == set(ids)
    assert all(r["status"] == "completed" and r["version"] == 1 and r["zip"] for r in rows)
    scores = [r["answer_correctness"] for r in rows]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in rows] == list(range(1, points + 1))
    html = (sweep_dir / "comparison.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http://" not in html
    assert (sweep_dir / "comparison.md").read_text().count("| completed |") == points
    return rows


def test_a_grid_runs_within_the_session_limit_and_a_killed_sweep_resumes(tmp_path: Path, sweep_dir: Path) -> None:
    gate = threading.Event()  # the kernels run until the test opens it: no race with the machine's speed
    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.3, execute_fn=fake_kernel(tmp_path, 0.5, gate),
                   behaviour=KaggleBehaviour(max_running=2)).start()
    try:
        env, out = sweep_env(emu), tmp_path / "zips"
        # --max-concurrent 3 > the account's 2: the third push is refused in-band and waits for a slot.
        proc = tunix_rt_popen(env, *sweep_args(sweep_dir, out, "--max-concurrent", "3"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(emu.calls("SaveKernel")) < 3:
            time.sleep(0.05)
        second = tunix_rt(env, *sweep_args(sweep_dir, out))  # one command per sweep folder (rundir_lock.py)
        assert second.code == 2 and "tunix-rt sweep" in second.stderr, second.output[-2000:]
        proc.send_signal(signal.SIGKILL)  # mid-way: two points pushed and running, the third refused, none pulled
        proc.communicate(timeout=30)
        assert len(emu.calls("SaveKernel")) == 3 and sum(len(v) for v in accepted_pushes(emu).values()) == 2
        assert emu.peak_running(USER) == 2
        gate.set()

        res = tunix_rt(env, *sweep_args(sweep_dir, out, "--max-concurrent", "3", "--json"), timeout=300)
        assert res.code == 0, res.output[-4000:]
        assert_complete_sweep(emu, sweep_dir, out)
        result = res.json_lines()[-1]
        assert result["event"] == "result" and result["exit_code"] == 0 and result["pushes"] + result["landed"] == 2
        # The third push of the first command was refused in-band (no version made); nothing failed.
        assert len(emu.calls("SaveKernel")) - 4 == 1 + result["refusals"]
        assert not any(e.get("event") == "point_failed" for e in res.json_lines())

        calls = len(emu.requests)
        again = tunix_rt(env, *sweep_args(sweep_dir, out), timeout=120)  # all done: no Kaggle call at all
        assert again.code == 0, again.output[-3000:]
        assert len(emu.requests) == calls and "4/4 points completed" in again.stdout
    finally:
        emu.stop()


def test_bad_grid_is_exit_2_before_any_call_or_file(tmp_path: Path, sweep_dir: Path) -> None:
    emu = Emulator(tmp_path / "kaggle", execute_fn=fake_kernel(tmp_path)).start()
    try:
        env, out = sweep_env(emu), tmp_path / "zips"
        base = ["sweep", "--kernel-id", PREFIX, "--accelerator", "cpu", "--config", "training/configs/sft_tiny.yaml",
                "--run-dir", str(sweep_dir), "--output", str(out)]
        for extra, needle in (
            (["--set", "training.learnin_rate=0.1,0.2"], "training.learnin_rate: unknown key"),
            (["--set", "training.batch_size=8,big"], "training.batch_size: expected int, got 'big'"),
            (["--set", "training.learning_rate=-1,0.1"], "training.learning_rate"),
            (["--set", "training.max_steps.x=1,2"], "training.max_steps is a value, not a section"),
            (["--set", "training.seed"], "expected KEY=V1,V2"),
        ):
            res = tunix_rt(env, *base, *extra)
            assert res.code == 2, (extra, res.output)
            assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        long_prefix = f"{USER}/{'x' * 45}"
        res = tunix_rt(env, *[long_prefix if a == PREFIX else a for a in base], "--set", "training.seed=1,2")
        assert res.code == 2 and "at most 50" in res.stderr, res.output
        assert emu.requests == [] and not sweep_dir.exists()
        no_key = tunix_rt(cli_env(emu, key=None, TUNIX_RT_PUSH_SETTLE_S="2"), *base, "--set", "training.seed=1,2")
        assert no_key.code == 4 and emu.requests == [], no_key.output  # the sweep stops at once, nothing pushed
    finally:
        emu.stop()


def test_one_failed_point_does_not_stop_the_others(tmp_path: Path, sweep_dir: Path) -> None:
    ok = fake_kernel(tmp_path, 0.5)

    def fail_one(job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
        with tarfile.open(fileobj=io.BytesIO(extract_payload(job.source))) as tar:
            names = [n for n in tar.getnames() if n.startswith("training/configs/sft_tiny-")]
            member = tar.extractfile(names[0])
            assert member is not None
            if b"learning_rate: 0.003" in member.read():
                return Result(False, "Kernel exited with code 1: RuntimeError: diverged")
        return ok(job, log, stop)

    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.2, execute_fn=fail_one).start()
    try:
        env, out = sweep_env(emu), tmp_path / "zips"
        res = tunix_rt(env, *sweep_args(sweep_dir, out), timeout=300)
        assert res.code == 1, res.output[-3000:]
        rows = json.loads((sweep_dir / "comparison.json").read_text())["rows"]
        by_status = sorted(r["status"] for r in rows)
        assert by_status == ["completed", "completed", "failed", "failed"]
        failed = [r for r in rows if r["status"] == "failed"]
        assert all(r["settings"]["training.learning_rate"] == 0.003 and "diverged" in r["error"] for r in failed)
        assert [r["status"] for r in rows][-2:] == ["failed", "failed"]  # no score: ranked last
        assert len(list(out.glob("*.zip"))) == 2 and "2/4 points completed" in res.output
        calls = len(emu.requests)
        again = tunix_rt(env, *sweep_args(sweep_dir, out), timeout=120)  # the failures are final: not run again
        assert again.code == 1 and "2/4 points completed" in again.output and len(emu.requests) == calls
    finally:
        emu.stop()


def test_slots_held_by_other_sessions_of_the_account_back_off_then_push(tmp_path: Path, sweep_dir: Path) -> None:
    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.2, execute_fn=fake_kernel(tmp_path, 0.3),
                   behaviour=KaggleBehaviour(max_running=1)).start()
    try:
        # A session of another kernel of this account holds the only CPU slot until the sweep was refused twice.
        _, other = emu.store.create_version(USER, "other-kernel", title="other-kernel", kernel_type="script",
                                           language="python", text="print(1)\n", request={}, session_timeout_s=None,
                                           status="RUNNING")

        def end_other() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(emu.calls("SaveKernel")) < 2:
                time.sleep(0.05)
            emu.store.update(other, status="COMPLETE", finished_at=time.time())

        threading.Thread(target=end_other, daemon=True).start()
        env, out = sweep_env(emu), tmp_path / "zips"
        res = tunix_rt(env, *[a if a != "training.smoke_steps=2,3" else "training.smoke_steps=2" for a in
                              sweep_args(sweep_dir, out, "--json")], timeout=300)
        assert res.code == 0, res.output[-3000:]
        deferred = [e for e in res.json_lines() if e.get("event") == "push_deferred"]
        assert len(deferred) >= 2 and all(e["running"] == 0 and e["limit"] == 1 for e in deferred[:2])
        assert emu.peak_running(USER) == 1
        assert {s: v for s, v in accepted_pushes(emu).items() if s != "other-kernel"} == {
            f"tiny-sweep-{p}": [1] for p in json.loads((sweep_dir / "sweep.json").read_text())
            and [p["id"] for p in json.loads((sweep_dir / "sweep.json").read_text())["points"]]}
    finally:
        emu.stop()


def test_the_sweeps_deadline_is_exit_3_and_the_rerun_resumes(tmp_path: Path, sweep_dir: Path) -> None:
    gate = threading.Event()
    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.2, execute_fn=fake_kernel(tmp_path, 0.2, gate)).start()
    try:
        env, out = sweep_env(emu), tmp_path / "zips"
        res = tunix_rt(env, *sweep_args(sweep_dir, out, "--timeout", "6", "--json"), timeout=120)
        assert res.code == 3, res.output[-3000:]
        assert "run the same command again to resume" in res.json_lines()[-1]["error"]
        rows = json.loads((sweep_dir / "comparison.json").read_text())["rows"]
        assert sorted(r["status"] for r in rows) == ["pending", "pending", "running", "running"]
        gate.set()
        res = tunix_rt(env, *sweep_args(sweep_dir, out), timeout=300)
        assert res.code == 0, res.output[-3000:]
        assert sum(len(v) for v in accepted_pushes(emu).values()) == 4 == len(emu.calls("SaveKernel"))
    finally:
        emu.stop()


def test_session_limit_reads_kaggles_refusal() -> None:
    assert session_limit("Kaggle refused the push of a/b: Maximum batch GPU session count of 2 reached.") == 2
    assert session_limit("Kernel push error: Maximum batch GPU session count of 4 reached") == 4
    assert session_limit("Maximum batch CPU session count of 10 reached.") == 10
    assert session_limit("Notebook not found") is None and session_limit(None) is None


# ---------------------------------------------------------------------------------- the real tiny config


@pytest.mark.kernel
@pytest.mark.slow
def test_tiny_grid_trains_on_the_emulator_within_two_sessions(tmp_path: Path, sweep_dir: Path) -> None:
    """The issue's "done when": a 2×2 grid of the tiny config (smoke), the account limited to 2 sessions, the
    sweep interrupted (Ctrl-C) mid-way and run again."""
    emu = Emulator(tmp_path / "kaggle", queue_seconds=0.3, behaviour=KaggleBehaviour(max_running=2)).start()
    try:
        env, out = sweep_env(emu), tmp_path / "zips"
        args = sweep_args(sweep_dir, out, "--max-concurrent", "3")
        proc = tunix_rt_popen(env, *args)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(accepted_pushes(emu)) < 2:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err[-2000:]
        assert sum(len(v) for v in accepted_pushes(emu).values()) == 2

        res = tunix_rt(env, *args, timeout=1500)
        assert res.code == 0, res.output[-4000:]
        rows = assert_complete_sweep(emu, sweep_dir, out)
        assert all(r["final_loss"] is not None and r["tokens_per_second"] for r in rows)
        assert len(emu.calls("SaveKernel")) > 4  # the third push met the limit in-band and waited
    finally:
        emu.stop()


# ---------------------------------------------------------------------------------- the scheduler's poller


class _SimClient:
    """A Kaggle of simulated time for the poller: each kernel RUNNING until its end time, then COMPLETE."""

    def __init__(self, clock: list[float], ends: dict[str, float]) -> None:
        self.clock, self.ends = clock, ends
        self.calls = 0
        self.asked: list[str] = []
        self.credentials = type("Creds", (), {"secrets": ()})()

    def status(self, ref: str, version: int | None) -> tuple[str, str]:
        self.calls += 1
        self.asked.append(ref)
        return ("COMPLETE" if self.clock[0] >= self.ends[ref] else "RUNNING"), ""


def test_running_points_share_one_poll_schedule(tmp_path: Path) -> None:
    from tunix_rt.progress import Reporter
    from tunix_rt.runners.kaggle import KaggleRunner
    from tunix_rt.runstate import RunState
    from tunix_rt.sweep import Scheduler, SweepOptions
    from tunix_rt.sweep_grid import GridAxis
    from tunix_rt.sweep_plan import make_plan
    from tunix_rt.wait import WaitOptions, poll_calls

    reporter = Reporter("sweep", json_mode=True)
    plan = make_plan(tmp_path / "sweep", kernel_prefix=PREFIX, accelerator="cpu", mode="smoke",
                     config="training/configs/sft_tiny.yaml", axes=[GridAxis("training.seed", (1, 2))],
                     reporter=reporter)
    clock = [0.0]
    duration = 1800.0
    ends = {p.kernel_id: duration for p in plan.points}
    for p in plan.points:  # both pushed an hour ago (no stale-status grace) and seen running
        state = RunState.read(p.run_dir)
        kaggle = state.kaggle_record()
        kaggle.kernel_ref, kaggle.version_number, kaggle.status = p.kernel_id, 1, "RUNNING"
        kaggle.pushed_at_epoch, kaggle.session_timeout_s, kaggle.seen_active = time.time() - 3600, 9 * 3600, True
        state.write()
    client = _SimClient(clock, ends)
    ended: list[tuple[str, float]] = []

    class PollOnly(Scheduler):
        def _finish(self, point, result) -> None:  # noqa: ANN001 - pull/evidence are not this test's subject
            ended.append((point.id, clock[0]))
            point.phase = "completed"

    options = SweepOptions(max_concurrent=2, wait=WaitOptions(poll_min=5.0, poll_max=60.0, log_stream=False))
    sched = PollOnly(plan, KaggleRunner(lambda: client), reporter, options, clock=lambda: clock[0],
                     sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    outcome = sched.run()
    assert outcome.exit_code == 0 and len(ended) == 2
    # One budget: the calls of ONE run of that length (plus at most one per point to see its end), not two.
    assert client.calls <= poll_calls(duration) + 2
    # Round robin: the two kernels take turns, so each is asked about every 2 × 60 s at the cap ...
    refs = [p.kernel_id for p in plan.points]
    assert all(a != b for a, b in zip(client.asked[:-1], client.asked[1:], strict=True))
    assert set(client.asked) == set(refs)
    # ... and each end is seen at most 2 × poll_max late.
    assert all(duration <= t <= duration + 2 * 60.0 for _, t in ended)
