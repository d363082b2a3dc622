"""``tunix-rt rehearse``: backend choice, and (with the training stack) a real local smoke rehearsal end to
end: bundle → papermill → evidence → validation, with the same bundle sha256 ``tunix-rt bundle`` gives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tunix_rt import runstate
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_KERNEL_FAILED
from tunix_rt.fsutil import read_json, sha256_file
from tunix_rt.rehearse import choose_backend
from tunix_rt.validate import validate_run_dir

BANNER = "✅ Smoke run completed successfully!"


def test_explicit_backend_is_used_as_given() -> None:
    out = io.StringIO()
    assert choose_backend("local", out) == "local"
    assert out.getvalue() == "backend: local\n"


def test_auto_falls_back_to_local_without_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-daemon.sock'}")
    out = io.StringIO()
    assert choose_backend("auto", out) == "local"
    assert "no Docker daemon answered" in out.getvalue()


@pytest.mark.kernel
def test_local_smoke_rehearsal_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "rehearsals" / "m33_rehearsal"
    assert main(["rehearse", "--backend", "local", "--mode", "smoke", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "backend: local" in out and BANNER in out and "rehearsal m33_rehearsal: complete" in out

    assert [str(p) for p in validate_run_dir(run_dir)] == []
    manifest, summary = read_json(run_dir / "run_manifest.json"), read_json(run_dir / "eval_summary.json")
    log = (run_dir / "kaggle_output_log.txt").read_text(encoding="utf-8")
    assert manifest["status"] == "complete" and manifest["model_id"] == "tunix-rt/gemma3-tiny"
    assert manifest["environment"]["platform"] == "local"
    assert manifest["run_version"] == summary["run_version"] == "m33_rehearsal"
    assert summary["primary_score"] == summary["metrics"]["answer_correctness"]
    assert BANNER in log
    assert "report.html" in out and (run_dir / "report.html").is_file() and (run_dir / "loss.png").is_file()
    assert manifest["bundle_sha256"] == sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb")

    state = runstate.load(run_dir)
    assert (state["platform"], state["accelerator"]) == ("local", "cpu")
    assert state["raw_log"] == "raw_log/console.log"
    assert state["command"].startswith("tunix-rt rehearse --backend local --mode smoke --run-dir ")
    assert state["stages"]["rehearse"]["status"] == "done"
    kernel_run = read_json(run_dir / "outputs" / "output" / "kernel_run.json")
    assert kernel_run["status"] == "complete" and kernel_run["run_version"] == "m33_rehearsal"

    # `tunix-rt bundle` with the same inputs (same run version) gives the very bytes that ran
    other = tmp_path / "elsewhere" / "m33_rehearsal"
    assert main(["bundle", "--mode", "smoke", "--run-dir", str(other)]) == 0
    assert sha256_file(other / "bundle" / "kaggle_submission.ipynb") == manifest["bundle_sha256"]


@pytest.mark.kernel
def test_failed_notebook_still_gets_evidence_and_exits_1(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An eval set the training script rejects passes bundling (it is just a file) but fails in the kernel."""
    bad_eval = tmp_path / "broken_eval.jsonl"
    bad_eval.write_text('{"id": "x-1", "prompt": "no expected answer"}\nnot json\n', encoding="utf-8")
    run_dir = tmp_path / "m33_broken"
    code = main(["rehearse", "--backend", "local", "--run-dir", str(run_dir), "--eval-set", str(bad_eval)])
    captured = capsys.readouterr()
    assert code == EXIT_KERNEL_FAILED
    assert BANNER not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunix-rt rehearse: error: the notebook failed on local")
    manifest = json.loads((run_dir / "run_manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed" and manifest["failure_message"]
    assert (run_dir / "kaggle_output_log.txt").read_text(encoding="utf-8").strip()
    assert 'class="badge failed"' in (run_dir / "report.html").read_text(encoding="utf-8")  # a report says so
    assert runstate.load(run_dir)["stages"]["rehearse"]["status"] == "failed"
