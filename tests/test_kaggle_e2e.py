"""End to end: ``tunix-rt push/wait/pull/run`` (subprocesses, the real kaggle 2.2.5 client) against the
local Kaggle emulator, with faults. Most scenarios push a tiny hand-made bundle (``--bundle``) whose
notebook writes small fake outputs in about a second; one ``kernel`` test pushes the real bundle."""

from __future__ import annotations

import json
import signal
import time
import zipfile
from pathlib import Path

import pytest
from kaggle_e2e_helpers import (
    FAKE_KEY,
    POLL,
    REF,
    SLUG,
    USER,
    cli_env,
    files_containing,
    make_bundle,
    push_args,
    state,
    training_outputs,
    tunix_rt,
    tunix_rt_popen,
    versions,
)
from tunix_rt.emulator.app import Emulator
from tunix_rt.emulator.auth import AuthConfig


def assert_no_leak(*texts: str, roots: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert FAKE_KEY not in text
    for root in roots:
        assert files_containing(root, FAKE_KEY) == []
        for zpath in root.rglob("*.zip"):
            with zipfile.ZipFile(zpath) as zf:
                for name in zf.namelist():
                    assert FAKE_KEY.encode() not in zf.read(name), f"{zpath}:{name}"


# ------------------------------------------------------------------------------------------- happy paths


def test_gpu_push_wait_pull(emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    env = cli_env(emu)
    pushed = tunix_rt(env, "push", *push_args(run_dir, good_bundle, "gpu-t4x2", "--session-timeout", "3600"))
    assert pushed.code == 0, pushed.output
    (save,) = emu.calls("SaveKernel")
    body = save.body
    assert body["slug"] == REF
    assert body["machineShape"] == "NvidiaTeslaT4"
    assert body["enableGpu"] is True and not body.get("enableTpu")
    assert body["isPrivate"] is True and body["enableInternet"] is True
    assert body["sessionTimeoutSeconds"] == 3600
    assert body["dockerImagePinningType"] == "original" and "dockerImage" not in body

    waited = tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL)
    assert waited.code == 0, waited.output
    pulled = tunix_rt(env, "pull", "--run-dir", str(run_dir))
    assert pulled.code == 0, pulled.output

    st = state(run_dir)
    kaggle = st["kaggle"]
    assert kaggle["kernel_ref"] == REF and kaggle["version_number"] == 1 and kaggle["status"] == "COMPLETE"
    assert kaggle["machine_shape"] == "NvidiaTeslaT4" and kaggle["accelerator"] == "gpu-t4x2"
    assert kaggle["session_timeout_s"] == 3600 and kaggle["pushed_at"] and kaggle["finished_at"]
    assert st["platform"] == "emulator"
    assert (run_dir / "outputs" / "output" / "run_result.json").is_file()
    assert (run_dir / "raw_log" / f"{SLUG}.log").is_file() and st["raw_log"] == f"raw_log/{SLUG}.log"
    assert "tiny kernel wrote" in (run_dir / "kaggle_output_log.txt").read_text()
    assert len(emu.calls("SaveKernel")) == 1
    assert_no_leak(pushed.output, waited.output, pulled.output, roots=(run_dir,))


def test_tpu_run_end_to_end(emu: Emulator, good_bundle: Path, run_dir: Path, tmp_path: Path) -> None:
    env = cli_env(emu)
    out = tmp_path / "submission"
    res = tunix_rt(env, "run", *push_args(run_dir, good_bundle, "tpu-v5e-8", "--public", "--no-internet"),
                   "--output", str(out), "--json", *POLL)
    assert res.code == 0, res.output
    body = emu.calls("SaveKernel")[0].body
    assert body["machineShape"] == "TpuV5E8" and body["enableTpu"] is True and not body.get("enableGpu")
    assert "dockerImage" not in body and "dockerImagePinningType" not in body  # kaggle-cli #1197
    assert body["isPrivate"] is False and body["enableInternet"] is False
    assert "dockerImageVersionId" not in body["text"]
    events = res.json_lines()
    assert events[-1]["event"] == "result" and events[-1]["exit_code"] == 0
    expected = {"pushed", "status", "finished", "downloaded", "evidence", "packaged"}
    assert {e["event"] for e in events} >= expected
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1
    assert state(run_dir)["stages"]["package"]["status"] == "done"
    assert len(emu.calls("SaveKernel")) == 1
    # Rerunning the finished run does nothing new: every stage is skipped, no second push.
    again = tunix_rt(env, "run", *push_args(run_dir, good_bundle, "tpu-v5e-8"), "--output", str(out), *POLL)
    assert again.code == 0, again.output
    assert len(emu.calls("SaveKernel")) == 1
    assert_no_leak(res.output, again.output, roots=(run_dir, out))


def test_model_sources_from_metadata(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    gemma = "google/gemma-3/transformers/gemma-3-1b-it/1"
    bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"}, model_sources=[gemma])
    res = tunix_rt(cli_env(emu), "push", *push_args(run_dir, bundle))
    assert res.code == 0, res.output
    assert emu.calls("SaveKernel")[0].body["modelDataSources"] == [gemma]


# --------------------------------------------------------------------------------------- push failures


def test_push_error_in_body_fails_without_waiting(emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    emu.fail_next_pushes("Maximum batch GPU session count of 2 reached")
    env = cli_env(emu)
    res = tunix_rt(env, "run", *push_args(run_dir, good_bundle), *POLL)
    assert res.code == 5
    assert "Maximum batch GPU session count of 2 reached" in res.stderr
    assert len(res.stderr.strip().splitlines()[-1]) < 300
    assert emu.calls("GetKernelSessionStatus") == []  # no waiting
    # Nothing was created, so pushing again is allowed and works.
    again = tunix_rt(env, "push", *push_args(run_dir, good_bundle))
    assert again.code == 0, again.output
    assert versions(emu) == [1]


def test_invalid_sources_fail_and_spend_the_run(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    # On cpu there is no pre-flight (no quota to spend): SaveKernel's invalid*Sources is the authority.
    bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"},
                         model_sources=["nobody/nothing/jax/x/1"])
    env = cli_env(emu)
    res = tunix_rt(env, "push", *push_args(run_dir, bundle, "cpu"))
    assert res.code == 2
    assert "nobody/nothing/jax/x/1" in res.stderr and "new --run-dir" in res.stderr
    again = tunix_rt(env, "run", *push_args(run_dir, bundle, "cpu"), *POLL)
    assert again.code == 2
    assert len(emu.calls("SaveKernel")) == 1
    assert emu.calls("GetModelInstance") == []


def test_missing_credentials_exit_4_before_any_call(emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    res = tunix_rt(cli_env(emu, key=None), "push", *push_args(run_dir, good_bundle))
    assert res.code == 4
    assert "KAGGLE_USERNAME" in res.stderr and "kaggle.json" in res.stderr
    assert emu.requests == []
    assert "Authentication required" not in res.output  # the kaggle import's auth help is contained


def test_rejected_credentials_exit_4(tmp_path: Path, good_bundle: Path, run_dir: Path) -> None:
    emulator = Emulator(tmp_path / "k2", auth=AuthConfig(rejected_keys=frozenset({FAKE_KEY}))).start()
    try:
        res = tunix_rt(cli_env(emulator), "push", *push_args(run_dir, good_bundle))
    finally:
        emulator.stop()
    assert res.code == 4, res.output
    assert_no_leak(res.output)


# --------------------------------------------------------------------------------------- kernel outcome


def test_kernel_error_exit_1_evidence_failed_log_kept(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path),
                         fail="loss went NaN at step 3")
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, bundle), "--output", str(tmp_path / "z"), *POLL)
    assert res.code == 1, res.output
    st = state(run_dir)
    assert st["kaggle"]["status"] == "ERROR"
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert (run_dir / "raw_log" / f"{SLUG}.log").stat().st_size > 0
    assert "loss went NaN at step 3" in (run_dir / "kaggle_output_log.txt").read_text()
    assert not (tmp_path / "z").exists()  # nothing to submit


def test_deadline_exit_3_then_resume(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=6)
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    late = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--timeout", "1.5", *POLL)
    assert late.code == 3, late.output
    assert "deadline" in late.stderr and "tunix-rt wait" in late.stderr
    assert state(run_dir)["kaggle"]["status"] in ("QUEUED", "RUNNING")
    resumed = tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL)
    assert resumed.code == 0, resumed.output
    assert state(run_dir)["kaggle"]["version_number"] == 1 and len(emu.calls("SaveKernel")) == 1


def test_killed_wait_resumes_same_version(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=4)
    env = cli_env(emu)
    out = tmp_path / "submission"
    proc = tunix_rt_popen(env, "run", *push_args(run_dir, bundle), "--output", str(out), *POLL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (run_dir / "run_state.json").is_file() and (state(run_dir).get("kaggle") or {}).get("seen_active"):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert state(run_dir)["kaggle"]["version_number"] == 1
    res = tunix_rt(env, "run", *push_args(run_dir, bundle), "--output", str(out), *POLL)
    assert res.code == 0, res.output
    assert "not pushing again" in res.stderr
    assert len(emu.calls("SaveKernel")) == 1 and versions(emu) == [1]


# ---------------------------------------------------------------------------------------------- faults


def test_429_and_5xx_storm_is_retried(emu: Emulator, good_bundle: Path, run_dir: Path,
                                      tmp_path: Path) -> None:
    emu.set_faults(seed=7, rate_429=0.15, retry_after=1, rate_5xx=0.25)
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "z"),
                   *POLL, timeout=300)
    assert res.code == 0, res.output
    faults = [r.fault for r in emu.requests if r.fault]
    assert "429" in faults and ({"500", "503"} & set(faults))
    assert versions(emu) == [1]  # however many SaveKernel attempts, one version
    assert "retry" in res.stderr
    assert_no_leak(res.output, roots=(run_dir,))


def test_dropped_connection_after_push_is_not_pushed_again(emu: Emulator, good_bundle: Path,
                                                           run_dir: Path) -> None:
    emu.script_faults("SaveKernel", "drop_after")  # processed, then the socket closes unanswered
    emu.script_faults("GetKernelSessionStatus", "drop", "drop")
    env = cli_env(emu)
    res = tunix_rt(env, "push", *push_args(run_dir, good_bundle))
    assert res.code == 0, res.output
    assert "not pushing again" in res.stderr
    assert len(emu.calls("SaveKernel")) == 1 and versions(emu) == [1]
    assert state(run_dir)["kaggle"]["version_number"] == 1
    waited = tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL)
    assert waited.code == 0, waited.output


def test_dropped_connection_before_push_is_retried(emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    emu.script_faults("SaveKernel", "drop")  # closed before processing: nothing created
    res = tunix_rt(cli_env(emu), "push", *push_args(run_dir, good_bundle))
    assert res.code == 0, res.output
    assert len(emu.calls("SaveKernel")) == 2 and versions(emu) == [1]


def test_stale_status_is_not_taken_for_the_new_version(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    emu.seed_version(USER, SLUG, status="COMPLETE")  # v1: the previous, successful session
    emu.set_faults(stale_polls=3)
    bundle = make_bundle(tmp_path / "b", files={"output/x.txt": "x"}, fail="the new version fails")
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    assert state(run_dir)["kaggle"]["version_number"] == 2
    res = tunix_rt(env, "wait", "--run-dir", str(run_dir), "--json", *POLL)
    assert res.code == 1, res.output
    events = res.json_lines()
    assert any(e["event"] == "stale_status_ignored" for e in events)
    assert state(run_dir)["kaggle"]["status"] == "ERROR"
    labels = {(r.body or {}).get("versionLabel") for r in emu.calls("GetKernelSessionStatus")}
    assert labels == {"v2"}


def test_paged_outputs_and_hostile_names(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    emu.set_faults(page_size_cap=4)
    bundle = make_bundle(tmp_path / "b", files={"output/a.txt": "a"}, n_extra=25)
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    assert tunix_rt(env, "wait", "--run-dir", str(run_dir), *POLL).code in (0, 1)
    for name in ("../evil.txt", "/tmp/abs-evil.txt", "sub/../../evil2.txt"):
        emu.add_output(USER, SLUG, 1, name, b"pwned")
    emu.add_output_symlink(USER, SLUG, 1, "link", "/etc/passwd")
    res = tunix_rt(env, "pull", "--run-dir", str(run_dir), "--json")
    assert res.code in (0, 1), res.output  # 1: these fake outputs are not a complete training run
    outputs = run_dir / "outputs"
    assert len(list((outputs / "extra").iterdir())) == 25
    assert len(emu.calls("ListKernelSessionOutput")) >= 7
    warnings = [e["message"] for e in res.json_lines() if e["event"] == "warning"]
    assert sum("refusing" in w for w in warnings) == 3
    assert not (run_dir / "evil.txt").exists() and not (run_dir.parent / "evil2.txt").exists()
    assert not Path("/tmp/abs-evil.txt").exists() or Path("/tmp/abs-evil.txt").read_bytes() != b"pwned"
    assert not (outputs / "link").is_symlink()


# ---------------------------------------------------------------------------------- the real bundle


@pytest.mark.kernel
@pytest.mark.slow
def test_real_bundle_trains_on_the_emulator_with_faults(emu: Emulator, repo_root: Path, tmp_path: Path,
                                                        run_dir: Path) -> None:
    out = tmp_path / "submission"
    emu.set_faults(seed=3, rate_429=0.05, retry_after=1, rate_5xx=0.1)
    res = tunix_rt(cli_env(emu), "run", "--kernel-id", f"{USER}/tunix-rt-smoke", "--accelerator", "cpu",
                   "--config", str(repo_root / "training/configs/sft_tiny.yaml"), "--mode", "smoke",
                   "--run-dir", str(run_dir), "--output", str(out), "--poll-min", "1", "--poll-max", "5",
                   timeout=1800)
    assert res.code == 0, res.output[-4000:]
    st = state(run_dir)
    assert st["kaggle"]["status"] == "COMPLETE" and st["platform"] == "emulator"
    from tunix_rt.validate import validate_run_dir

    assert validate_run_dir(run_dir) == []
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert len(list(out.glob("*.zip"))) == 1
    assert len(emu.calls("SaveKernel")) >= 1 and [
        n for n in (1, 2) if emu.version(USER, "tunix-rt-smoke", n) is not None] == [1]
    assert_no_leak(res.output, roots=(run_dir, out))
