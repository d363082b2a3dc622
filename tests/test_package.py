"""The submission zip: contents, identical bytes, refusals, no path out of the project, no credentials."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from run_fixtures import CONFIG_PATH, EVAL_SET_PATH, write_finished_run, write_project
from tunix_rt import package as package_mod
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_OK, EXIT_USAGE, TunixRtError
from tunix_rt.evidence import MANIFEST_FILE, SUMMARY_FILE, fill_evidence
from tunix_rt.package import README_NAME, archive_name, package
from tunix_rt.run_report import write_report

FAKE_KEY = "0123456789abcdef0123456789abcdef"
RUN = "submission_runs/m33_v1"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout with a complete, validated run at submission_runs/m33_v1."""
    root = write_project(tmp_path / "repo")
    run_dir = write_finished_run(root / RUN)
    os.utime(run_dir / "outputs/output/run_result.json", (1_763_000_000, 1_763_000_000))  # 2025-11-13
    fill_evidence(run_dir, root=root)
    write_report(run_dir)
    return root


def edit(path: Path, **fields: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def test_contents_and_name(project: Path) -> None:
    edit(project / RUN / MANIFEST_FILE, commit_sha="89abcdef" * 5)
    result = package(project / RUN, project / "submission", root=project)
    assert result.path == project / "submission" / "tunix_rt_m33_2025-11-13_89abcde.zip"
    with zipfile.ZipFile(result.path) as zf:
        names = zf.namelist()
        readme = zf.read(README_NAME).decode()
    assert names == sorted(names)
    assert set(names) == {
        README_NAME,
        "kernel/kaggle_submission.ipynb",
        "training/__init__.py",
        "training/eval_generate.py",
        "training/train_jax.py",
        CONFIG_PATH,
        "training/configs/submission_gemma3_1b.yaml",
        "training/datasets/dev-reasoning-v2/manifest.json",
        EVAL_SET_PATH,
        f"{RUN}/run_manifest.json",
        f"{RUN}/eval_summary.json",
        f"{RUN}/kaggle_output_log.txt",
        f"{RUN}/report.html",
        f"{RUN}/loss.png",
    }
    assert "dataset.jsonl" not in " ".join(names)  # manifests only, not the data
    assert "| Answer correctness (primary score) | 0.7500 (3/4) |" in readme
    assert "`tunix-rt/gemma3-tiny`" in readme
    for item in (
        "1,500 words",
        "Track",
        "Cover image",
        "Public Kaggle notebook",
        "at most 3 minutes",
        "Tunix + Gemma on a Kaggle TPU within one 9 h session",
    ):
        assert item in readme
    assert "- [ ] Trained with Tunix + Gemma on a Kaggle TPU" in readme  # a CPU rehearsal does not tick it


def test_zip_is_byte_identical_and_has_fixed_metadata(project: Path) -> None:
    first = package(project / RUN, project / "a", root=project)
    # Different file times must not change a byte.
    os.utime(project / "training/train_jax.py", (1_800_000_000, 1_800_000_000))
    second = package(project / RUN, project / "b", root=project)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    with zipfile.ZipFile(first.path) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.create_system == 3


def test_archive_name() -> None:
    assert archive_name("m33_v1", "2026-11-20T10:42:13Z", "a" * 40) == "tunix_rt_m33_2026-11-20_aaaaaaa.zip"
    assert (
        archive_name("rehearsal", "2026-11-20T10:42:13Z", "unknown")
        == "tunix_rt_rehearsal_2026-11-20_unknown.zip"
    )


def test_refuses_invalid_evidence(project: Path) -> None:
    edit(project / RUN / SUMMARY_FILE, primary_score=0.1)
    with pytest.raises(TunixRtError) as exc:
        package(project / RUN, project / "submission", root=project)
    assert exc.value.exit_code == EXIT_USAGE
    assert "invalid evidence" in exc.value.message and "primary_score" in exc.value.message
    assert not (project / "submission").exists()


def test_refuses_failed_run(project: Path) -> None:
    fill_evidence(project / RUN, failure="kernel ERROR", root=project)
    with pytest.raises(TunixRtError, match="only a complete run is packaged"):
        package(project / RUN, project / "submission", root=project)


@pytest.mark.parametrize(
    "missing",
    [
        "kernel/kaggle_submission.ipynb",
        EVAL_SET_PATH,
        CONFIG_PATH,
        "training/datasets/dev-reasoning-v2/manifest.json",
    ],
)
def test_refuses_missing_required_file(project: Path, missing: str) -> None:
    (project / missing).unlink()
    with pytest.raises(TunixRtError) as exc:
        package(project / RUN, project / "submission", root=project)
    assert exc.value.exit_code == EXIT_USAGE
    assert "\n" not in exc.value.message
    assert not (project / "submission").exists()


def test_refuses_missing_evidence_file(project: Path) -> None:
    (project / RUN / "kaggle_output_log.txt").unlink()
    with pytest.raises(TunixRtError, match="kaggle_output_log.txt: \\(file\\): missing"):
        package(project / RUN, project / "submission", root=project)


@pytest.mark.parametrize("name", ["report.html", "loss.png"])
def test_refuses_a_run_without_its_report(project: Path, name: str) -> None:
    (project / RUN / name).unlink()
    with pytest.raises(TunixRtError, match=f"{name}: missing; write the run report first: tunix-rt report"):
        package(project / RUN, project / "submission", root=project)
    assert not (project / "submission").exists()


def test_refuses_config_changed_since_the_run(project: Path) -> None:
    with open(project / CONFIG_PATH, "a") as fh:
        fh.write("# edited after the run\n")
    with pytest.raises(TunixRtError, match="sha256 differs from the config the run used"):
        package(project / RUN, project / "submission", root=project)


def test_refuses_symlink_out_of_the_project(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("print('not ours')\n")
    (project / "training/escape.py").symlink_to(outside)
    with pytest.raises(TunixRtError, match="outside the project"):
        package(project / RUN, project / "submission", root=project)


def test_symlink_inside_the_project_is_fine(project: Path) -> None:
    (project / "training/alias.py").symlink_to(project / "training/train_jax.py")
    result = package(project / RUN, project / "submission", root=project)
    assert "training/alias.py" in result.members


def test_run_dir_outside_the_project_is_filed_under_submission_runs(project: Path, tmp_path: Path) -> None:
    elsewhere = write_finished_run(tmp_path / "elsewhere" / "m33_v1")
    # Evidence times come from the outputs' mtimes: give both runs the same ones, so only the path differs.
    for src in (project / RUN / "outputs/output").iterdir():
        mtime = src.stat().st_mtime
        os.utime(elsewhere / "outputs/output" / src.name, (mtime, mtime))
    fill_evidence(elsewhere, root=project)
    write_report(elsewhere)
    result = package(elsewhere, project / "submission", root=project)
    assert f"{RUN}/run_manifest.json" in result.members
    assert (
        result.path.read_bytes() == package(project / RUN, project / "again", root=project).path.read_bytes()
    )


def test_refuses_evidence_linked_from_outside_the_run_dir(project: Path, tmp_path: Path) -> None:
    stolen = tmp_path / "elsewhere.txt"
    stolen.write_text("not this run's log\n")
    (project / RUN / "kaggle_output_log.txt").unlink()
    (project / RUN / "kaggle_output_log.txt").symlink_to(stolen)
    with pytest.raises(TunixRtError, match="outside the run directory"):
        package(project / RUN, project / "submission", root=project)


def test_no_credentials_in_the_zip(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    # A credential in the raw log is redacted on the way into the evidence, so the zip is clean ...
    (project / RUN / "raw_log/console.log").write_text(f"KAGGLE_KEY={FAKE_KEY}\nBearer {FAKE_KEY}\n")
    fill_evidence(project / RUN, root=project)
    result = package(project / RUN, project / "submission", root=project)
    with zipfile.ZipFile(result.path) as zf:
        for name in zf.namelist():
            assert FAKE_KEY.encode() not in zf.read(name), name
    assert FAKE_KEY.encode() not in result.path.read_bytes()
    # ... and one that sneaks into a packaged source file stops the packaging.
    (project / "training/train_jax.py").write_text(f"KEY = '{FAKE_KEY}'\n")
    with pytest.raises(TunixRtError, match="training/train_jax.py: contains a credential"):
        package(project / RUN, project / "again", root=project)
    assert not (project / "again").exists()


def test_cli(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(package_mod.paths, "project_root", lambda: project)
    out_dir = project / "submission"
    assert main(["package", "--run-dir", str(project / RUN), "--output", str(out_dir)]) == EXIT_OK
    assert capsys.readouterr().out.startswith(f"wrote {out_dir}/tunix_rt_m33_2025-11-13_unknown.zip")
    (project / EVAL_SET_PATH).unlink()
    assert main(["package", "--run-dir", str(project / RUN), "--output", str(out_dir)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tunix-rt package: error: ") and err.count("\n") == 1
