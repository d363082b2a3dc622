"""Evidence validation: the schemas and the cross-checks, through the library and `tunix-rt validate`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from run_fixtures import GEMMA_MODEL, kaggle_block, write_finished_run
from tunix_rt import paths
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_OK, EXIT_USAGE
from tunix_rt.evidence import LOG_FILE, MANIFEST_FILE, SUMMARY_FILE, fill_evidence
from tunix_rt.validate import validate_run_dir

FAKE_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A complete, valid rehearsal evidence folder."""
    run_dir = write_finished_run(tmp_path / "submission_runs" / "m33_rehearsal")
    fill_evidence(run_dir, root=tmp_path)
    assert validate_run_dir(run_dir) == []
    return run_dir


def edit(path: Path, change: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def problems(run_dir: Path) -> list[str]:
    return [str(p) for p in validate_run_dir(run_dir)]


def one_problem(run_dir: Path, file: str, field: str, text: str) -> None:
    found = problems(run_dir)
    assert any(p.startswith(f"{run_dir / file}: {field}: ") and text in p for p in found), found


@pytest.mark.parametrize("field", ["model_id", "commit_sha", "environment", "bundle_sha256", "timestamp"])
def test_manifest_missing_field(run: Path, field: str) -> None:
    edit(run / MANIFEST_FILE, lambda d: d.pop(field))
    one_problem(run, MANIFEST_FILE, field, "missing required field")


def test_summary_missing_nested_field(run: Path) -> None:
    edit(run / SUMMARY_FILE, lambda d: d["metrics"].pop("answer_correctness"))
    one_problem(run, SUMMARY_FILE, "metrics.answer_correctness", "missing required field")


@pytest.mark.parametrize(
    "file, mutate, field",
    [
        (MANIFEST_FILE, lambda d: d.update(commit_dirty="no"), "commit_dirty"),
        (MANIFEST_FILE, lambda d: d["environment"].update(devices="1"), "environment.devices"),
        (MANIFEST_FILE, lambda d: d["environment"].update(platform="colab"), "environment.platform"),
        (MANIFEST_FILE, lambda d: d.update(timestamp="25/11/2026"), "timestamp"),
        (MANIFEST_FILE, lambda d: d.update(bundle_sha256=None), "bundle_sha256"),
        (SUMMARY_FILE, lambda d: d.update(n_items="4"), "n_items"),
        (SUMMARY_FILE, lambda d: d["metrics"].update(answer_correctness=75), "metrics.answer_correctness"),
        (SUMMARY_FILE, lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_wrong_type_or_value(run: Path, file: str, mutate: Callable[[dict], None], field: str) -> None:
    edit(run / file, mutate)
    one_problem(run, file, field, "")


def test_schema_messages_are_specific_and_redacted(run: Path) -> None:
    edit(run / SUMMARY_FILE, lambda d: d["metrics"].update(answer_correctness=75))
    one_problem(run, SUMMARY_FILE, "metrics.answer_correctness", "75 is greater than the maximum of 1")
    edit(run / MANIFEST_FILE, lambda d: d.update(commit_dirty="KGAT_0123456789abcdef"))
    found = problems(run)
    assert all("KGAT_0123456789abcdef" not in p for p in found)
    one_problem(run, MANIFEST_FILE, "commit_dirty", "[REDACTED]")


def test_unknown_field_rejected(run: Path) -> None:
    edit(run / MANIFEST_FILE, lambda d: d.update(notes="typed by hand"))
    one_problem(run, MANIFEST_FILE, "(root)", "notes")


def test_primary_score_must_equal_answer_correctness(run: Path) -> None:
    edit(run / SUMMARY_FILE, lambda d: d.update(primary_score=0.5))
    one_problem(run, SUMMARY_FILE, "primary_score", "does not equal metrics.answer_correctness 0.75")


def test_answer_correctness_must_agree_with_counts(run: Path) -> None:
    edit(
        run / SUMMARY_FILE,
        lambda d: (d.update(primary_score=1.0), d["metrics"].update(answer_correctness=1.0)),
    )
    one_problem(run, SUMMARY_FILE, "metrics.answer_correctness", "n_correct/n_items = 3/4")


def test_complete_run_needs_scores(run: Path) -> None:
    edit(
        run / SUMMARY_FILE,
        lambda d: (d.update(primary_score=None), d["metrics"].update(answer_correctness=None)),
    )
    one_problem(run, SUMMARY_FILE, "primary_score", "None is not of type 'number'")


def test_failed_run_needs_a_failure_message(run: Path) -> None:
    edit(run / MANIFEST_FILE, lambda d: d.update(status="failed"))
    edit(run / SUMMARY_FILE, lambda d: d.update(status="failed"))
    one_problem(run, MANIFEST_FILE, "failure_message", "None is not of type 'string'")


@pytest.mark.parametrize("file", [MANIFEST_FILE, SUMMARY_FILE])
def test_run_version_must_match_folder(run: Path, file: str) -> None:
    edit(run / file, lambda d: d.update(run_version="m33_v1"))
    one_problem(run, file, "run_version", "does not match the folder name 'm33_rehearsal'")


def test_renamed_folder_is_caught(run: Path) -> None:
    moved = run.rename(run.with_name("m34_v1"))
    assert any("does not match the folder name 'm34_v1'" in p for p in problems(moved))


def test_kaggle_platform_needs_a_competition_model(tmp_path: Path) -> None:
    run_dir = write_finished_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block())
    fill_evidence(run_dir, root=tmp_path)
    one_problem(run_dir, MANIFEST_FILE, "model_id", "not a competition model on platform kaggle")


def test_kaggle_platform_with_gemma_is_valid(tmp_path: Path) -> None:
    run_dir = write_finished_run(
        tmp_path / "m33_v1",
        platform="kaggle",
        model_id=GEMMA_MODEL,
        param_count=999_885_952,
        kaggle=kaggle_block(),
    )
    fill_evidence(run_dir, root=tmp_path)
    assert problems(run_dir) == []


def test_kaggle_platform_needs_the_kaggle_block(tmp_path: Path) -> None:
    run_dir = write_finished_run(
        tmp_path / "m33_v1", platform="kaggle", model_id=GEMMA_MODEL, param_count=10**9
    )
    fill_evidence(run_dir, root=tmp_path)
    one_problem(run_dir, MANIFEST_FILE, "kaggle", "None is not of type 'object'")


def test_validate_reads_only_the_evidence_files(run: Path) -> None:
    """A fresh clone has none of the run directory's ignored folders: the verdict must not depend on them."""
    import shutil

    edit(run / SUMMARY_FILE, lambda d: d.update(primary_score=0.5))
    with_outputs = problems(run)
    for folder in ("outputs", "raw_log", "bundle"):
        shutil.rmtree(run / folder, ignore_errors=True)
    (run / "run_state.json").unlink()
    assert problems(run) == with_outputs and len(with_outputs) == 1


@pytest.mark.parametrize("leak", ["checkout", "home", "temp"])
def test_machine_folders_are_refused(run: Path, leak: str, monkeypatch: pytest.MonkeyPatch) -> None:
    home = run.parent / "home" / "alice"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(paths, "project_root", lambda: run.parent / "checkout")
    path = {"checkout": f"{run.parent}/checkout/training/run.py", "home": f"{home}/.cache/x",
            "temp": "/tmp/tunix-rt-kaggle-k3j2h1g0/kaggle/input"}[leak]
    (run / LOG_FILE).write_text(f"File \"{path}\", line 1\n")
    label = {"checkout": "the checkout", "home": "the home folder", "temp": "a tunix-rt temporary folder"}[leak]
    one_problem(run, LOG_FILE, "(content)", f"names {label} of the machine that ran")


def test_rehearsal_claim_caught_without_outputs(run: Path) -> None:
    # Committed folders have no outputs/: the parameter count still gives a false claim away.
    import shutil

    shutil.rmtree(run / "outputs")
    edit(run / MANIFEST_FILE, lambda d: d.update(model_id=GEMMA_MODEL))
    edit(run / SUMMARY_FILE, lambda d: d.update(model_id=GEMMA_MODEL))
    assert [p for p in problems(run) if "model_id" in p] == [
        f"{run / MANIFEST_FILE}: model_id: claims {GEMMA_MODEL} but param_count is 1,234,567; "
        "a rehearsal must keep its true model id"
    ]


def test_files_must_agree(run: Path) -> None:
    edit(run / SUMMARY_FILE, lambda d: d.update(model_id="tunix-rt/other"))
    one_problem(run, SUMMARY_FILE, "model_id", "differs from run_manifest.json's")


def test_log_missing_empty_or_leaking(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = run / LOG_FILE
    log.write_text("")
    one_problem(run, LOG_FILE, "(file)", "empty")
    log.write_text("Authorization: Basic YWxpY2U6c2VjcmV0c2VjcmV0\n")
    one_problem(run, LOG_FILE, "(content)", "contains a credential (authorization header)")
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    log.write_text(f"the key was {FAKE_KEY}\n")
    one_problem(run, LOG_FILE, "(content)", "secret value from the environment")
    assert all(FAKE_KEY not in p for p in problems(run))  # the problem names the kind, never the value
    log.unlink()
    one_problem(run, LOG_FILE, "(file)", "missing")


def test_unreadable_json(run: Path) -> None:
    (run / SUMMARY_FILE).write_text("{")
    one_problem(run, SUMMARY_FILE, "(file)", "not valid JSON")


def test_not_a_directory(tmp_path: Path) -> None:
    assert problems(tmp_path / "missing") == [f"{tmp_path / 'missing'}: (folder): not a directory"]


def test_cli_ok_and_problems(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(run)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("OK: 1 evidence folder(s) valid")
    edit(run / SUMMARY_FILE, lambda d: d.update(primary_score=0.5))
    assert main(["validate", str(run)]) == EXIT_USAGE
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{run / SUMMARY_FILE}: primary_score: 0.5 does not equal metrics.answer_correctness 0.75"]


def test_cli_json(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(run / MANIFEST_FILE, lambda d: d.pop("command"))
    assert main(["validate", "--json", str(run)]) == EXIT_USAGE
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert (report["event"], report["command"], report["exit_code"]) == ("result", "validate", EXIT_USAGE)
    assert report["problems"] == [
        {"path": str(run / MANIFEST_FILE), "field": "command", "problem": "missing required field"}
    ]


def test_cli_defaults_to_every_folder_under_submission_runs(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "submission_runs_dir", lambda: run.parent)
    (run.parent / "broken_v1").mkdir()
    assert main(["validate"]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert "broken_v1/run_manifest.json: (file): missing" in out and "m33_rehearsal" not in out


def test_cli_with_no_run_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(paths, "submission_runs_dir", lambda: tmp_path / "submission_runs")
    assert main(["validate"]) == EXIT_USAGE
    assert "no run folders under" in capsys.readouterr().err


def test_cli_json_ok_and_bad_input(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cli_json import json_lines

    assert main(["validate", "--json", str(run)]) == EXIT_OK
    (result,) = json_lines(capsys.readouterr().out, "validate", EXIT_OK)
    assert result["ok"] is True and result["problems"] == [] and result["run_dirs"] == [str(run)]
    monkeypatch.setattr(paths, "submission_runs_dir", lambda: tmp_path / "none")
    assert main(["validate", "--json"]) == EXIT_USAGE
    (result,) = json_lines(capsys.readouterr().out, "validate", EXIT_USAGE)
    assert "no run folders under" in result["error"]


def test_default_run_dirs_stand_a_sweep_folder_for_its_points(tmp_path: Path) -> None:
    from tunix_rt.validate import default_run_dirs

    for name in ("m33_v1", ".hidden", "sweep-lr/aaaa1111", "sweep-lr/bbbb2222", "sweep-lr/.tmp"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "sweep-lr" / "sweep.json").write_text("{}", encoding="utf-8")
    assert default_run_dirs(tmp_path) == [tmp_path / "m33_v1", tmp_path / "sweep-lr" / "aaaa1111",
                                          tmp_path / "sweep-lr" / "bbbb2222"]
