"""``tunix-rt wait`` against an emulator that answers like Kaggle (the real kaggle client in a subprocess): a
log stream the load balancer cuts again and again, a kernel this account cannot see, NEW_SCRIPT and the
cancel statuses."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from emulator_fixtures import FakeRun
from kaggle_e2e_helpers import USER, cli_env, make_bundle, push_args, state, tunix_rt, tunix_rt_popen
from tunix_rt.emulator import Emulator, KaggleBehaviour
from tunix_rt.emulator.kaggle_log import parse
from tunix_rt.fsutil import write_json_atomic


def test_a_log_stream_cut_every_second_still_sees_the_end_at_once(tmp_path: Path, run_dir: Path) -> None:
    """Kaggle cuts idle streams (~3 min; here 1 s) and replays the log on reconnect (kaggle-cli PR #999): the
    watcher reconnects, counts each line once, and the wait sees COMPLETE long before its next status poll."""
    emu = Emulator(tmp_path / "k", queue_seconds=0.3,
                   behaviour=KaggleBehaviour(stream_idle_cut_s=1.0)).start()
    try:
        code = "import time\nprint('started', flush=True)\ntime.sleep(9)\nprint('done', flush=True)\n"
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
        nb = json.loads((bundle / "kaggle_submission.ipynb").read_text())
        nb["cells"][0]["source"] = code
        (bundle / "kaggle_submission.ipynb").write_text(json.dumps(nb))
        # Time scaled down with the cut: Kaggle cuts after ~180 s and a connection that served 30 s is
        # reconnected at once; here 1 s and 0.5 s.
        env = cli_env(emu, TUNIX_RT_STREAM_SERVED_S="0.5")
        assert tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu")).code == 0
        # Polls 8 s, then 12 s apart: without the stream, completion would be seen up to ~12 s late.
        res = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--poll-min", "8", "--poll-max", "60", "--json",
                       timeout=180)
        done = time.time()
        assert res.code == 0, res.output
        version = emu.version(USER, "tiny-kernel", 1)
        assert version is not None and version.finished_at is not None
        assert done - version.finished_at < 5.0, (done - version.finished_at, res.output)
        events = {e["event"] for e in res.json_lines()}
        assert "log_stream_ended" in events
        stream = state(run_dir)["kaggle"]["log_stream"]
        entries = parse(version.log_path.read_text(encoding="utf-8"))
        assert stream["ended"] and not stream["gave_up"]
        assert stream["cuts"] >= 3 and stream["connections"] == stream["cuts"] + 1
        assert stream["events"] == len(entries)  # replayed lines are skipped, not counted again
        cut = [r for r in emu.calls("logs_stream") if r.fault == "idle_cut"]
        assert len(cut) == stream["cuts"]
        recorded = state(run_dir)["kaggle"]["wait_api_calls"]
        status_calls = len(emu.calls("GetKernelSessionStatus"))
        assert recorded == status_calls + stream["connections"] + 1  # + the credential check
    finally:
        emu.stop()


def _pushed_state(run_dir: Path, ref: str, pushed_ago_s: float) -> None:
    write_json_atomic(run_dir / "run_state.json", {
        "schema_version": 1, "run_version": run_dir.name, "stages": {"push": {"status": "done"}},
        "kaggle": {"kernel_ref": ref, "version_number": 1, "pushed_at_epoch": time.time() - pushed_ago_s,
                   "session_timeout_s": 600, "status": "PUSHED"}})


def test_a_kernel_this_account_cannot_see_is_named_not_blamed_on_credentials(emu: Emulator,
                                                                             run_dir: Path) -> None:
    emu.seed_version("bob", "private-kern")  # someone else's private kernel: 403 for alice
    _pushed_state(run_dir, "bob/private-kern", pushed_ago_s=3600)
    res = tunix_rt(cli_env(emu), "wait", "--run-dir", str(run_dir))
    assert res.code == 2, res.output
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("tunix-rt wait: error:")
    assert "HTTP 403 for bob/private-kern v1" in line and "cannot see" in line and "credential" not in line
    # Inside the post-push grace the same answer means "not visible yet": the wait polls on, then names it.
    other = run_dir.parent / "fresh"
    _pushed_state(other, f"{USER}/not-visible-yet", pushed_ago_s=0)
    emu.clear_requests()
    env = cli_env(emu, TUNIX_RT_STALE_GRACE_S="6")  # generous: the process starts inside the window
    res = tunix_rt(env, "wait", "--run-dir", str(other), "--poll-min", "0.5", "--poll-max", "0.5")
    assert res.code == 2 and f"HTTP 403 for {USER}/not-visible-yet v1" in res.stderr, res.output
    assert len(emu.calls("GetKernelSessionStatus")) >= 2


def test_new_script_then_a_cancel_acknowledged_ends_the_run_with_exit_1(tmp_path: Path, run_dir: Path) -> None:
    fake = FakeRun(gated=True)
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, execute_fn=fake,
                   behaviour=KaggleBehaviour(new_script_s=2.0)).start()
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
        proc = tunix_rt_popen(cli_env(emu), "run", *push_args(run_dir, bundle, "cpu"), "--json",
                              "--output", str(tmp_path / "z"), "--poll-min", "0.3", "--poll-max", "0.3")
        assert fake.started.wait(60)
        # Acknowledged before three polls (0.3 s apart) of CANCEL_REQUESTED would count as the end (wait.py).
        threading.Timer(1.0, lambda: emu.cancel(USER, "tiny-kernel", 1, acknowledge_after_s=0.5)).start()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        statuses = [json.loads(line)["status"] for line in out.splitlines()
                    if line.startswith("{") and json.loads(line)["event"] == "status"]
        assert statuses[0] == "NEW_SCRIPT" and statuses[-1] == "CANCEL_ACKNOWLEDGED", statuses
        assert {"QUEUED", "RUNNING"} <= set(statuses) <= {"NEW_SCRIPT", "QUEUED", "RUNNING", "CANCEL_REQUESTED",
                                                         "CANCEL_ACKNOWLEDGED"}
        assert state(run_dir)["kaggle"]["status"] == "CANCEL_ACKNOWLEDGED"
        assert not (tmp_path / "z").exists()  # nothing to submit
    finally:
        emu.stop()


def test_a_cancel_that_is_never_acknowledged_counts_as_finished(tmp_path: Path, run_dir: Path) -> None:
    fake = FakeRun(gated=True)
    emu = Emulator(tmp_path / "k", queue_seconds=0.3, execute_fn=fake).start()
    try:
        bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"})
        env = cli_env(emu)
        assert tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu")).code == 0
        assert fake.started.wait(60)
        emu.cancel(USER, "tiny-kernel", 1, acknowledge_after_s=None)
        # This wait never sees the version active, so the stale-status guard holds it for the post-push grace.
        env["TUNIX_RT_STALE_GRACE_S"] = "1"
        res = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--poll-min", "0.1", "--poll-max", "0.2")
        assert res.code == 1, res.output
        assert state(run_dir)["kaggle"]["status"] == "CANCEL_REQUESTED"
    finally:
        emu.stop()
