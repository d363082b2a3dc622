"""fill_evidence: one code path from a finished run's outputs to schema-valid evidence, complete or failed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from run_fixtures import GEMMA_MODEL, TINY_MODEL, kaggle_block, kaggle_log_text, write_finished_run
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.evidence import LOG_FILE, MANIFEST_FILE, SUMMARY_FILE, fill_evidence, normalise_utc
from tunix_rt.validate import validate_run_dir

FAKE_KEY = "0123456789abcdef0123456789abcdef"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_complete_rehearsal(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal")
    ev = fill_evidence(run, root=tmp_path)
    assert ev.ok and ev.failure_message is None
    manifest, summary = load(run / MANIFEST_FILE), load(run / SUMMARY_FILE)
    assert manifest["run_version"] == summary["run_version"] == "m33_rehearsal"
    assert manifest["model_id"] == TINY_MODEL  # what the kernel trained, not what a config hoped for
    assert manifest["environment"]["platform"] == "local"
    assert manifest["environment"]["accelerator"] == "cpu"
    assert manifest["bundle_sha256"] == "ab" * 32
    assert manifest["kaggle"] is None
    assert manifest["commit_sha"] == "unknown" and manifest["commit_dirty"] is None  # tmp_path: no checkout
    assert summary["primary_score"] == summary["metrics"]["answer_correctness"] == 0.75
    assert summary["n_items"] == summary["n_predictions"] == 4
    assert summary["metrics"]["final_loss"] == 4.2
    assert (run / LOG_FILE).read_text().endswith("✅ Smoke run completed successfully!\n")
    assert validate_run_dir(run) == []


def test_timestamp_comes_from_the_run_and_refilling_is_identical(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal")
    os.utime(run / "outputs/output/run_result.json", (1_763_000_000, 1_763_000_000))
    fill_evidence(run, root=tmp_path)
    first = {n: (run / n).read_bytes() for n in (MANIFEST_FILE, SUMMARY_FILE, LOG_FILE)}
    assert load(run / MANIFEST_FILE)["timestamp"] == "2025-11-13T02:13:20Z"
    fill_evidence(run, root=tmp_path)
    assert {n: (run / n).read_bytes() for n in first} == first


def test_commit_sha_from_the_project_checkout(tmp_path: Path, repo_root: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal")
    manifest = load(fill_evidence(run, root=repo_root).manifest)
    assert len(manifest["commit_sha"]) == 40 and isinstance(manifest["commit_dirty"], bool)


def test_kaggle_run_gets_the_kaggle_block(tmp_path: Path) -> None:
    run = write_finished_run(
        tmp_path / "m33_v1",
        platform="kaggle",
        model_id=GEMMA_MODEL,
        param_count=999_885_952,
        kaggle=kaggle_block(),
        raw_log_name="tunix-rt-m33.log",
        raw_log=kaggle_log_text([{"stream_name": "stdout", "time": 1.0, "data": "trained\n"}]),
    )
    ev = fill_evidence(run, root=tmp_path)
    manifest = load(ev.manifest)
    assert ev.ok
    assert manifest["kaggle"]["kernel_ref"] == "alice/tunix-rt-m33"
    assert manifest["kaggle"]["finished_at"] == "2026-11-20T10:42:13Z"  # normalised to UTC "Z"
    assert manifest["timestamp"] == "2026-11-20T10:42:13Z"  # Kaggle's finish time, not a file's mtime
    assert "session_timeout_s" not in manifest["kaggle"]
    assert (run / LOG_FILE).read_text() == "trained\n"
    assert validate_run_dir(run) == []


def test_kaggle_error_still_writes_failed_evidence(tmp_path: Path) -> None:
    run = write_finished_run(
        tmp_path / "m33_v1",
        platform="kaggle",
        model_id=GEMMA_MODEL,
        param_count=999_885_952,
        status="failed",
        with_eval=False,
        kaggle=kaggle_block("ERROR", "Your notebook tried to allocate more memory than is available."),
        raw_log_name="tunix-rt-m33.log",
        raw_log=kaggle_log_text([{"stream_name": "stderr", "time": 3.0, "data": "RESOURCE_EXHAUSTED\n"}]),
    )
    ev = fill_evidence(run, root=tmp_path)
    manifest, summary = load(ev.manifest), load(ev.summary)
    assert not ev.ok
    assert manifest["status"] == summary["status"] == "failed"
    assert "Kaggle status ERROR: Your notebook tried to allocate" in manifest["failure_message"]
    assert summary["primary_score"] is None and summary["metrics"]["answer_correctness"] is None
    assert (run / LOG_FILE).read_text() == "[stderr] RESOURCE_EXHAUSTED\n"
    assert validate_run_dir(run) == []


def test_run_without_any_outputs_is_failed_evidence(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal", with_outputs=False, raw_log="")
    ev = fill_evidence(run, failure="papermill exited 1", root=tmp_path)
    manifest = load(ev.manifest)
    assert manifest["status"] == "failed"
    assert manifest["failure_message"].startswith("papermill exited 1")
    assert "no output/run_result.json" in manifest["failure_message"]
    assert manifest["model_id"] is None and manifest["training"] is None
    assert "no console output" in (run / LOG_FILE).read_text()
    assert validate_run_dir(run) == []


def test_runner_failure_overrides_a_complete_result(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal")
    ev = fill_evidence(run, failure="container exited 137", root=tmp_path)
    assert ev.status == "failed" and load(ev.summary)["status"] == "failed"
    assert validate_run_dir(run) == []


def test_missing_eval_results_is_a_failure(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal", with_eval=False)
    ev = fill_evidence(run, root=tmp_path)
    assert ev.status == "failed" and "eval_results.json" in ev.failure_message


def test_a_session_cut_for_time_is_its_own_status_and_validates(tmp_path: Path) -> None:
    """A training session that checkpointed and stopped before its deadline (run_result and kernel_run both
    cut_for_time, no scores): evidence status cut_for_time, not a failure, and it validates (chain.py)."""
    run = write_finished_run(tmp_path / "s1", status="cut_for_time", with_eval=False, platform="emulator",
                             kaggle=kaggle_block())
    evidence = fill_evidence(run)
    assert evidence.status == "cut_for_time" and evidence.cut_for_time and not evidence.ok
    assert evidence.failure_message is None
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["status"] == "cut_for_time" and summary["primary_score"] is None
    assert validate_run_dir(run) == []


def test_a_cut_session_whose_kernel_did_not_finish_is_failed(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "s1", status="cut_for_time", with_eval=False, platform="emulator",
                             kaggle=kaggle_block("ERROR", "Your notebook exceeded the session timeout of 60 seconds."))
    evidence = fill_evidence(run)
    assert evidence.status == "failed" and "exceeded the session timeout" in (evidence.failure_message or "")


def test_unreadable_output_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal")
    (run / "outputs/output/eval_results.json").write_text("{not json")
    ev = fill_evidence(run, root=tmp_path)
    assert ev.status == "failed" and "eval_results.json is unreadable" in ev.failure_message


def test_credentials_never_reach_the_evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    raw = kaggle_log_text([{"stream_name": "stdout", "time": 1, "data": f"KAGGLE_KEY={FAKE_KEY}\n"}])
    run = write_finished_run(tmp_path / "m33_rehearsal", raw_log=raw, raw_log_name="k.log")
    fill_evidence(run, root=tmp_path)
    for name in (MANIFEST_FILE, SUMMARY_FILE, LOG_FILE):
        assert FAKE_KEY not in (run / name).read_text()
    assert "[REDACTED]" in (run / LOG_FILE).read_text()


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(TunixRtError) as exc:
        fill_evidence(tmp_path / "nope")
    assert exc.value.exit_code == EXIT_USAGE
    (tmp_path / "r").mkdir()
    with pytest.raises(TunixRtError, match="platform"):
        fill_evidence(tmp_path / "r")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-20T10:42:13Z", "2026-11-20T10:42:13Z"),
        ("2026-11-20T11:42:13+01:00", "2026-11-20T10:42:13Z"),
        ("2026-11-20T10:42:13.123456", "2026-11-20T10:42:13Z"),
        ("yesterday", "yesterday"),
        (None, None),
    ],
)
def test_normalise_utc(value: str | None, expected: str | None) -> None:
    assert normalise_utc(value) == expected


def test_extra_secrets_are_redacted(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal", raw_log="token in use: client-only-secret-42\n")
    fill_evidence(run, root=tmp_path, secrets=["client-only-secret-42"])
    assert (run / LOG_FILE).read_text() == "token in use: [REDACTED]\n"


def test_credentials_in_commands_and_failure_messages_are_redacted(tmp_path: Path) -> None:
    run = write_finished_run(tmp_path / "m33_rehearsal", with_outputs=False)
    state = load(run / "run_state.json")
    state["command"] = "tunix-rt rehearse --token KGAT_0123456789abcdef"
    (run / "run_state.json").write_text(json.dumps(state))
    ev = fill_evidence(run, failure="push said: Authorization: Bearer abcdefghijklmnop1234", root=tmp_path)
    text = (run / MANIFEST_FILE).read_text() + (run / SUMMARY_FILE).read_text() + str(ev.failure_message)
    assert "KGAT_0123456789abcdef" not in text and "abcdefghijklmnop1234" not in text
    assert validate_run_dir(run) == []
