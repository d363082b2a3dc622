"""The submission zip: what ran (the bundle's notebook and its complete payload), identical bytes, refusals,
no credentials and no folder of this machine in any entry."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from run_fixtures import (
    CONFIG_PATH,
    EVAL_SET_PATH,
    edit_json,
    with_evidence_and_report,
    write_eval_set,
    write_finished_run,
)
from tunix_rt import paths
from tunix_rt.bundle import build_bundle, build_payload, extract_payload, render_notebook
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_OK, EXIT_USAGE, TunixRtError
from tunix_rt.evidence import MANIFEST_FILE, SUMMARY_FILE, fill_evidence
from tunix_rt.fsutil import sha256_bytes, sha256_file
from tunix_rt.package import METADATA, NOTEBOOK, README_NAME, archive_name, package
from tunix_rt.run_report import REPORT_FILES

FAKE_KEY = "0123456789abcdef0123456789abcdef"
RUN = "m33_v1"
EVIDENCE = [f"submission_runs/{RUN}/{n}" for n in ("eval_summary.json", "kaggle_output_log.txt", "run_manifest.json",
                                                   *REPORT_FILES)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real bundle (``tunix-rt bundle``) for runs named m33_v1, with the fixtures' eval set."""
    scratch = tmp_path_factory.mktemp("bundle")
    info = build_bundle(scratch / RUN, mode="smoke", eval_set=write_eval_set(scratch))
    return info.bundle_dir


@pytest.fixture
def run(tmp_path: Path, bundle: Path) -> Path:
    """A complete, validated run (with that bundle) in a folder outside any checkout."""
    run_dir = write_finished_run(tmp_path / "runs" / RUN, bundle=bundle)
    os.utime(run_dir / "outputs/output/run_result.json", (1_763_000_000, 1_763_000_000))  # 2025-11-13
    return with_evidence_and_report(run_dir, tmp_path)


def payload_names(notebook: Path) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(extract_payload(notebook)), mode="r:gz") as tar:
        return {m.name for m in tar.getmembers()}


def test_ships_the_notebook_that_ran_and_its_whole_payload(run: Path, tmp_path: Path) -> None:
    edit_json(run / MANIFEST_FILE, commit_sha="89abcdef" * 5)
    result = package(run, tmp_path / "submission")
    assert result.path == tmp_path / "submission" / "tunix_rt_m33_2025-11-13_89abcde.zip"
    with zipfile.ZipFile(result.path) as zf:
        names = zf.namelist()
        notebook = zf.read(NOTEBOOK)
        readme = zf.read(README_NAME).decode()
        metadata = json.loads(zf.read(METADATA))
    assert names == sorted(names)
    payload = payload_names(run / "bundle" / "kaggle_submission.ipynb")
    assert set(names) == {README_NAME, NOTEBOOK, METADATA, *EVIDENCE, *payload}
    # the notebook is the bundle's, byte for byte: its sha256 is the evidence's bundle_sha256
    assert sha256_bytes(notebook) == json.loads((run / MANIFEST_FILE).read_text())["bundle_sha256"]
    assert metadata["code_file"] == "kaggle_submission.ipynb"
    for needed in ("kernel/requirements.txt", "training/train_jax.py", "training/bootstrap.py", CONFIG_PATH,
                   EVAL_SET_PATH, "training/datasets/dev-reasoning-v2/dataset.jsonl",
                   "training/tokenizer/tokenizer.json", "training/tokenizer/tokenizer_config.json"):
        assert needed in names, needed
    assert f"`{NOTEBOOK}`, the notebook that ran" in readme and sha256_bytes(notebook) in readme
    assert f"python training/train_jax.py --config {CONFIG_PATH} --output output --device cpu" in readme
    assert "| Answer correctness (primary score) | 0.7500 (3/4) |" in readme
    assert "`tunix-rt/gemma3-tiny`" in readme
    for item in ("1,500 words", "Track", "Cover image", "Public Kaggle notebook", "at most 3 minutes",
                 "Tunix + Gemma on a Kaggle TPU within one 9 h session"):
        assert item in readme
    assert "- [ ] Trained with Tunix + Gemma on a Kaggle TPU" in readme  # a CPU rehearsal does not tick it


def test_zip_is_byte_identical_whichever_folder_the_run_lives_in(run: Path, tmp_path: Path) -> None:
    first = package(run, tmp_path / "a")
    moved = tmp_path / "elsewhere" / RUN
    shutil.copytree(run, moved)  # other file times, other folder: not one byte may change
    os.utime(moved / "bundle" / "kaggle_submission.ipynb", (1_800_000_000, 1_800_000_000))
    second = package(moved, tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    with zipfile.ZipFile(first.path) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.create_system == 3


def test_no_machine_folder_in_any_entry(run: Path, tmp_path: Path) -> None:
    result = package(run, tmp_path / "submission")
    needles = {str(tmp_path), str(run), os.path.expanduser("~") + "/", "tunix-rt-kaggle-", "/tmp/"}
    with zipfile.ZipFile(result.path) as zf:
        for name in zf.namelist():
            text = zf.read(name).decode("utf-8", errors="replace")
            assert not [n for n in needles if n in text or n in name], name


def test_archive_name() -> None:
    assert archive_name("m33_v1", "2026-11-20T10:42:13Z", "a" * 40) == "tunix_rt_m33_2026-11-20_aaaaaaa.zip"
    assert (
        archive_name("rehearsal", "2026-11-20T10:42:13Z", "unknown")
        == "tunix_rt_rehearsal_2026-11-20_unknown.zip"
    )


def _refused(run: Path, out: Path, match: str) -> None:
    with pytest.raises(TunixRtError, match=match) as exc:
        package(run, out)
    assert exc.value.exit_code == EXIT_USAGE and "\n" not in exc.value.message
    assert not out.exists()


def test_refuses_invalid_evidence(run: Path, tmp_path: Path) -> None:
    edit_json(run / SUMMARY_FILE, primary_score=0.1)
    _refused(run, tmp_path / "submission", "invalid evidence: .*primary_score")


def test_refuses_failed_run(run: Path, tmp_path: Path) -> None:
    fill_evidence(run, failure="kernel ERROR", root=tmp_path)
    _refused(run, tmp_path / "submission", "only a complete run is packaged")


@pytest.mark.parametrize("missing", ["bundle/kaggle_submission.ipynb", "bundle/kernel-metadata.json",
                                     "kaggle_output_log.txt", *REPORT_FILES])
def test_refuses_a_missing_file(run: Path, tmp_path: Path, missing: str) -> None:
    (run / missing).unlink()
    _refused(run, tmp_path / "submission", "missing")


def test_refuses_a_bundle_that_is_not_the_one_that_ran(run: Path, tmp_path: Path) -> None:
    notebook = run / "bundle" / "kaggle_submission.ipynb"
    notebook.write_text(notebook.read_text().replace('"smoke"', '"full"'))
    _refused(run, tmp_path / "submission", "is not the bundle that ran")


def test_refuses_a_config_other_than_the_run_used(run: Path, tmp_path: Path) -> None:
    edit_json(run / MANIFEST_FILE, config_sha256="0" * 64)
    _refused(run, tmp_path / "submission", "differs from the config the run used")
    edit_json(run / MANIFEST_FILE, config_path="training/configs/elsewhere.yaml")
    _refused(run, tmp_path / "submission", "the payload holds no config")


def test_refuses_files_linked_from_outside_the_run_dir(run: Path, tmp_path: Path) -> None:
    stolen = tmp_path / "elsewhere.txt"
    stolen.write_text("not this run's log\n")
    (run / "kaggle_output_log.txt").unlink()
    (run / "kaggle_output_log.txt").symlink_to(stolen)
    _refused(run, tmp_path / "submission", "symbolic link|outside the run directory")


def _rebundle(run: Path, extra: dict[str, str]) -> None:
    """Replace the run's bundle notebook by one whose payload also holds ``extra`` (name → text), and record
    it as the bundle that ran."""
    notebook = run / "bundle" / "kaggle_submission.ipynb"
    meta = json.loads(notebook.read_text())["metadata"]["tunix_rt"]
    with tarfile.open(fileobj=io.BytesIO(extract_payload(notebook)), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    scratch = run.parent / "scratch"
    sources = {}
    for name, data in {**files, **{k: v.encode() for k, v in extra.items()}}.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(data)
        sources[name] = scratch / name
    notebook.write_text(render_notebook(meta["parameters"], build_payload(sources)))
    edit_json(run / MANIFEST_FILE, bundle_sha256=sha256_file(notebook))


def test_no_credentials_in_the_zip(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    # A credential in the raw log is redacted on the way into the evidence, so the zip is clean ...
    (run / "raw_log/console.log").write_text(f"KAGGLE_KEY={FAKE_KEY}\nBearer {FAKE_KEY}\n")
    fill_evidence(run, root=tmp_path)
    result = package(run, tmp_path / "submission")
    assert FAKE_KEY.encode() not in result.path.read_bytes()
    with zipfile.ZipFile(result.path) as zf:
        for name in zf.namelist():
            assert FAKE_KEY.encode() not in zf.read(name), name
    # ... and one that sneaks into the payload that ran stops the packaging.
    _rebundle(run, {"training/leak.py": f"KEY = '{FAKE_KEY}'\n"})
    _refused(run, tmp_path / "again", "training/leak.py: contains a credential")


def test_refuses_a_machine_folder_in_the_payload(run: Path, tmp_path: Path) -> None:
    _rebundle(run, {"training/where.txt": f"trained from {paths.project_root()}/training\n"})
    _refused(run, tmp_path / "submission", "training/where.txt: names the checkout of this machine")


def test_refuses_an_unsafe_payload_entry(run: Path, tmp_path: Path) -> None:
    _rebundle(run, {"notes/readme.txt": "not training code\n"})
    _refused(run, tmp_path / "submission", "payload entry 'notes/readme.txt'")


def test_cli(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "submission"
    assert main(["package", "--run-dir", str(run), "--output", str(out_dir)]) == EXIT_OK
    assert capsys.readouterr().out.startswith(f"wrote {out_dir}/tunix_rt_m33_2025-11-13_unknown.zip")
    shutil.rmtree(run / "bundle")
    assert main(["package", "--run-dir", str(run), "--output", str(out_dir)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tunix-rt package: error: ") and err.count("\n") == 1


def test_cli_json(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_json import json_lines

    out_dir = tmp_path / "submission"
    assert main(["package", "--run-dir", str(run), "--output", str(out_dir), "--json"]) == EXIT_OK
    (result,) = json_lines(capsys.readouterr().out, "package", EXIT_OK)
    assert Path(result["zip"]).is_file() and result["sha256"] and README_NAME in result["members"]
    assert main(["package", "--run-dir", str(tmp_path / "nowhere"), "--json"]) == EXIT_USAGE
    (result,) = json_lines(capsys.readouterr().out, "package", EXIT_USAGE)
    assert "no such run directory" in result["error"]
