"""The typed run state: round trips, the schema-1 files older tunix-rt wrote (issue-8 fields included) load,
and anything else fails with one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.kernel_status import ACTIVE, FINISHED, TERMINAL, KernelStatus
from tunix_rt.runstate import SCHEMA_VERSION, BundleRecord, KaggleRecord, PulledFile, PushAttempt, RunState

# A run_state.json as tunix-rt wrote it before the typed state (schema 1), after a push that crashed once
# mid-SaveKernel, a wait with the log stream and a pull of two files; and a rehearsal's stage.
V1 = {
    "schema_version": 1,
    "run_version": "m33_v1",
    "platform": "emulator",
    "accelerator": "gpu-t4x2",
    "mode": "smoke",
    "command": "tunix-rt run --kernel-id alice/tiny-kernel --accelerator gpu-t4x2",
    "raw_log": "raw_log/tiny-kernel.log",
    "bundle": {"sha256": "ab" * 32, "metadata_sha256": "cd" * 32, "size_bytes": 1234, "payload_sha256": "ef" * 32,
               "config_path": "training/configs/sft_tiny.yaml", "dataset": "dev-reasoning-v2-x10",
               "eval_set": "training/evalsets/eval_v1.jsonl", "mode": "smoke", "kernel_id": "alice/tiny-kernel",
               "path": "bundle/kaggle_submission.ipynb"},
    "kaggle": {"kernel_ref": "alice/tiny-kernel", "url": "http://localhost/code/alice/tiny-kernel",
               "version_number": 2, "machine_shape": "NvidiaTeslaT4", "accelerator": "gpu-t4x2",
               "pushed_at": "2025-11-13T10:00:00Z", "pushed_at_epoch": 1763028000.5, "session_timeout_s": 32400,
               "status": "COMPLETE", "kaggle_kernel_id": 4242, "seen_active": True, "wait_api_calls": 17,
               "last_status_at": "2025-11-13T10:05:00Z", "finished_at": "2025-11-13T10:06:00Z",
               "failure_message": None,
               "log_stream": {"connections": 3, "cuts": 2, "events": 40, "ended": True, "gave_up": False},
               "pulled_files": {"output/run_result.json": {"bytes": 10, "sha256": "12" * 32},
                                "output/metrics.jsonl": {"bytes": 20, "sha256": "34" * 32}}},
    "stages": {"push": {"status": "done", "version_number": 2},
               "wait": {"status": "done", "kaggle_status": "COMPLETE"},
               "pull": {"status": "done", "files": 2, "refused": [], "pages": 1, "bytes": 30, "skipped": 0,
                        "expired_urls": 0},
               "rehearse": {"status": "failed", "backend": "local", "exit_code": 1, "wall_s": 3.2}},
}


def write(run_dir: Path, data: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run_state.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_a_schema_1_file_loads_with_every_field_typed(tmp_path: Path) -> None:
    run_dir = tmp_path / "m33_v1"
    write(run_dir, V1)
    state = RunState.read(run_dir)
    assert (state.platform, state.accelerator, state.raw_log) == ("emulator", "gpu-t4x2", "raw_log/tiny-kernel.log")
    assert isinstance(state.bundle, BundleRecord) and state.bundle.config_path == "training/configs/sft_tiny.yaml"
    kaggle = state.kaggle
    assert isinstance(kaggle, KaggleRecord) and kaggle.status is KernelStatus.COMPLETE
    assert (kaggle.label, kaggle.seen_active, kaggle.wait_api_calls, kaggle.session_timeout_s) == (
        "alice/tiny-kernel v2", True, 17, 32400)
    assert kaggle.pulled_files["output/metrics.jsonl"] == PulledFile(20, "34" * 32)
    assert kaggle.log_stream == V1["kaggle"]["log_stream"]
    # the runner's stage of a rehearsal is `execute` now
    assert "rehearse" not in state.stages and state.stage("execute").status == "failed"
    assert state.stage("execute").details["exit_code"] == 1
    assert state.done("push") and state.stage("pull").details["files"] == 2


def test_written_back_it_is_schema_2_and_keeps_every_value(tmp_path: Path) -> None:
    run_dir = tmp_path / "m33_v1"
    write(run_dir, V1)
    RunState.read(run_dir).write()
    data = json.loads((run_dir / "run_state.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION == 2
    expected = {k: v for k, v in V1.items() if k != "schema_version"}
    expected["stages"] = {("execute" if k == "rehearse" else k): v for k, v in V1["stages"].items()}
    for key, value in expected.items():
        if isinstance(value, dict):
            assert {k: data[key][k] for k in value} == value, key
        else:
            assert data[key] == value, key
    again = RunState.read(run_dir)
    assert again.to_dict() == data


def test_a_push_attempt_under_way_survives_the_round_trip(tmp_path: Path) -> None:
    state = RunState.new(tmp_path / "r")
    state.kaggle_record().push_attempt = PushAttempt("alice/tiny-kernel", 3, True, 2, "2025-11-13T10:00:00Z")
    state.write()
    kaggle = RunState.read(tmp_path / "r").kaggle
    assert kaggle is not None and kaggle.push_attempt == PushAttempt("alice/tiny-kernel", 3, True, 2,
                                                                     "2025-11-13T10:00:00Z")
    assert not kaggle.pushed


def test_keys_this_version_does_not_know_are_kept(tmp_path: Path) -> None:
    data = json.loads(json.dumps(V1))
    data["sweep"] = {"id": 7}
    data["kaggle"]["queue_position"] = 3
    write(tmp_path / "r", data)
    RunState.read(tmp_path / "r").write()
    back = json.loads((tmp_path / "r" / "run_state.json").read_text(encoding="utf-8"))
    assert back["sweep"] == {"id": 7} and back["kaggle"]["queue_position"] == 3


def test_an_absent_file_is_a_fresh_state_and_nothing_is_written(tmp_path: Path) -> None:
    state = RunState.read(tmp_path / "m33_v9")
    assert state.run_version == "m33_v9" and state.stages == {} and state.kaggle is None
    assert not (tmp_path / "m33_v9").exists()


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "unreadable run state"),
    ({"schema_version": 3, "stages": {}}, "schema_version 3"),
    ({"stages": {}}, "schema_version None"),
    ({**V1, "kaggle": {**V1["kaggle"], "version_number": "two"}}, "kaggle.version_number: expected an integer"),
    ({**V1, "kaggle": {**V1["kaggle"], "status": "SLEEPING"}}, "kaggle.status: unknown kernel status 'SLEEPING'"),
    ({**V1, "stages": {"push": {"status": "maybe"}}}, "stages.push.status: expected one of running, done, failed"),
    ({**V1, "kaggle": {**V1["kaggle"], "pulled_files": {"a": {"bytes": "x"}}}}, "kaggle.pulled_files.a.bytes"),
    ({**V1, "bundle": ["not", "an", "object"]}, "bundle: expected an object"),
])
def test_a_file_this_version_cannot_read_fails_with_one_line(tmp_path: Path, content: object, expected: str) -> None:
    path = write(tmp_path / "r", content)
    with pytest.raises(TunixRtError) as info:
        RunState.read(tmp_path / "r")
    assert info.value.exit_code == EXIT_USAGE
    assert info.value.message.startswith(f"{path}: ") and expected in info.value.message
    assert "\n" not in info.value.message


def test_a_command_on_a_broken_state_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "r", {**V1, "kaggle": {**V1["kaggle"], "seen_active": "yes"}})
    assert main(["wait", "--run-dir", str(tmp_path / "r")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kaggle.seen_active: expected true or false" in err


def test_the_status_vocabulary_is_kaggles_plus_pushed() -> None:
    from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

    assert {s.name for s in KernelWorkerStatus} | {"PUSHED"} == {str(s) for s in KernelStatus}
    assert TERMINAL < FINISHED and not TERMINAL & ACTIVE and KernelStatus.PUSHED not in FINISHED | ACTIVE
    assert KernelStatus.parse("complete") is KernelStatus.COMPLETE


def test_no_other_module_spells_the_status_sets() -> None:
    """The Kaggle status sets are defined once (kernel_status.py); no module repeats them."""
    root = Path(__file__).resolve().parent.parent / "automation"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "kernel_status.py"
                 and '"CANCEL_ACKNOWLEDGED"' in p.read_text(encoding="utf-8")]
    assert offenders == []
