"""``tunix-rt rehearse``: backend choice and Docker fallback, and (with the training stack) a real local smoke
rehearsal end to end: bundle → papermill → portable evidence → validation → a zip that reruns."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tunix_rt import paths
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_KERNEL_FAILED
from tunix_rt.fsutil import read_json, sha256_file
from tunix_rt.hostpaths import TEMP_MARKERS
from tunix_rt.package import NOTEBOOK, package
from tunix_rt.rehearse import backend_choice
from tunix_rt.runners import compile_cache
from tunix_rt.runners.docker import docker_available, docker_host
from tunix_rt.runstate import RunState
from tunix_rt.validate import validate_run_dir

BANNER = "✅ Smoke run completed successfully!"
EVIDENCE = ("run_manifest.json", "eval_summary.json", "kaggle_output_log.txt")
REPO = paths.project_root()
BOGUS_BASE = "tunix-rt/no-such-base:0"  # no registry, no such local image: the build cannot start


def test_explicit_backend_is_used_as_given() -> None:
    assert backend_choice("local") == ("local", "backend: local")


def test_auto_falls_back_to_local_without_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"unix://{tmp_path / 'no-daemon.sock'}"
    monkeypatch.setenv("DOCKER_HOST", address)
    assert backend_choice("auto") == ("local", f"backend: local (auto: no Docker daemon answered at {address})")


def test_docker_knobs_are_flags_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rehearse", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--base-image IMAGE", "$TUNIX_RT_BASE_IMAGE", "docker/make_base_image.sh",
                   "--jax-cache DIR|off", "$TUNIX_RT_JAX_CACHE"):
        assert needle in text, needle


# ------------------------------------------------------------------------------------ a real rehearsal


@dataclass
class Rehearsed:
    run_dir: Path
    code: int
    out: str
    status_before: str


def _git_status() -> str | None:
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


@pytest.fixture(scope="module")
def rehearsed() -> Iterator[Rehearsed]:
    """One local smoke rehearsal, as the README's Quick start runs it: into the checkout's ignored output/."""
    parent = REPO / "output" / f".pytest-{uuid.uuid4().hex[:10]}"
    run_dir = parent / "m33_rehearsal"
    before = _git_status() or ""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["rehearse", "--backend", "local", "--mode", "smoke", "--run-dir", str(run_dir)])
    yield Rehearsed(run_dir, code, out.getvalue(), before)
    shutil.rmtree(parent, ignore_errors=True)
    with contextlib.suppress(OSError):
        parent.parent.rmdir()  # output/ itself, when this test made it and nothing else is in it


@pytest.mark.kernel
def test_local_smoke_rehearsal_end_to_end(rehearsed: Rehearsed, tmp_path: Path) -> None:
    run_dir = rehearsed.run_dir
    assert rehearsed.code == 0, rehearsed.out[-3000:]
    assert "backend: local" in rehearsed.out and BANNER in rehearsed.out
    assert "rehearsal m33_rehearsal: complete" in rehearsed.out

    assert [str(p) for p in validate_run_dir(run_dir)] == []
    manifest, summary = read_json(run_dir / "run_manifest.json"), read_json(run_dir / "eval_summary.json")
    log = (run_dir / "kaggle_output_log.txt").read_text(encoding="utf-8")
    assert manifest["status"] == "complete" and manifest["model_id"] == "tunix-rt/gemma3-tiny"
    assert manifest["environment"]["platform"] == "local"
    assert manifest["run_version"] == summary["run_version"] == "m33_rehearsal"
    assert summary["primary_score"] == summary["metrics"]["answer_correctness"]
    assert BANNER in log
    assert "report.html" in rehearsed.out and (run_dir / "report.html").is_file() and (run_dir / "loss.png").is_file()
    assert manifest["bundle_sha256"] == sha256_file(run_dir / "bundle" / "kaggle_submission.ipynb")
    # the kernel ran the runbook's command from its payload root: it reruns as written from an unzipped zip
    assert manifest["kernel_command"] == (
        "python training/train_jax.py --config training/configs/sft_tiny.yaml --output output --dataset "
        "dev-reasoning-v2-x10 --eval_set training/evalsets/eval_v1.jsonl --device auto --smoke_steps 2")
    assert (manifest["config_path"], summary["eval_set"]) == ("training/configs/sft_tiny.yaml",
                                                              "training/evalsets/eval_v1.jsonl")

    state = RunState.read(run_dir)
    assert (state.platform, state.accelerator) == ("local", "cpu")
    assert state.raw_log == "raw_log/console.log"
    assert state.command.startswith("tunix-rt rehearse --backend local --mode smoke --run-dir output/")
    assert {name for name, rec in state.stages.items() if rec.done} == {"bundle", "execute", "evidence", "validate"}
    kernel_run = read_json(run_dir / "outputs" / "output" / "kernel_run.json")
    assert kernel_run["status"] == "complete" and kernel_run["run_version"] == "m33_rehearsal"

    # `tunix-rt bundle` with the same inputs (same run version) gives the very bytes that ran
    other = tmp_path / "elsewhere" / "m33_rehearsal"
    assert main(["bundle", "--mode", "smoke", "--run-dir", str(other)]) == 0
    assert sha256_file(other / "bundle" / "kaggle_submission.ipynb") == manifest["bundle_sha256"]


def _leaks(text: str, run_dir: Path) -> list[str]:
    """Paths of this machine in ``text``: checkout, run dir, home, venv, temp (and tunix-rt's temp folders)."""
    needles = [str(REPO), str(run_dir), str(Path.home()) + "/", tempfile.gettempdir() + "/"]
    if sys.prefix != sys.base_prefix:
        needles.append(sys.prefix)
    return [n for n in needles if n in text] + TEMP_MARKERS.findall(text)


@pytest.mark.kernel
def test_evidence_names_no_folder_of_this_machine(rehearsed: Rehearsed) -> None:
    assert rehearsed.code == 0
    for name in EVIDENCE:
        text = (rehearsed.run_dir / name).read_text(encoding="utf-8")
        assert _leaks(text, rehearsed.run_dir) == [], name
    log = (rehearsed.run_dir / "kaggle_output_log.txt").read_text(encoding="utf-8")
    assert "Input Notebook:  bundle/kaggle_submission.ipynb" in log  # papermill ran from the run directory
    assert "working dir: /kaggle/working; input dir: /kaggle/input" in log  # the Kaggle layout's names


@pytest.mark.kernel
def test_quick_start_leaves_the_tree_clean(rehearsed: Rehearsed) -> None:
    """The README's Quick start rehearses into an ignored folder and packages it: `git status` is unchanged."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("```")[1]
    assert "tunix-rt rehearse --mode smoke --run-dir output/runs/m33_rehearsal" in quick
    assert "tunix-rt package --run-dir output/runs/m33_rehearsal" in quick
    if _git_status() is None:
        pytest.skip("not a git checkout")
    for path in ("output/runs/m33_rehearsal", "submission/x.zip"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path
    assert rehearsed.code == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["package", "--run-dir", str(rehearsed.run_dir),
                     "--output", str(rehearsed.run_dir.parent / "submission")]) == 0
    assert _git_status() == rehearsed.status_before


@pytest.mark.kernel
@pytest.mark.slow
def test_the_zip_reruns(rehearsed: Rehearsed, tmp_path: Path) -> None:
    """Unzipped, the submission trains with the runbook's command and its notebook runs under papermill."""
    assert rehearsed.code == 0
    result = package(rehearsed.run_dir, tmp_path / "submission")
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(result.path) as zf:
        zf.extractall(unzipped)
        for name in zf.namelist():
            text = zf.read(name).decode("utf-8", errors="replace")
            assert _leaks(text, rehearsed.run_dir) == [], name
    manifest = read_json(rehearsed.run_dir / "run_manifest.json")
    assert sha256_file(unzipped / NOTEBOOK) == manifest["bundle_sha256"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TUNIX_RT_NO_INSTALL": "1"}
    cache = compile_cache.host_dir("local")  # what the rehearsal compiled: the reruns need not compile again
    env.update(compile_cache.kernel_env(cache) if cache else {})

    train = subprocess.run([sys.executable, "training/train_jax.py", "--config", "training/configs/sft_tiny.yaml",
                            "--output", "OUT", "--device", "cpu", "--smoke_steps", "2"],
                           cwd=unzipped, env=env, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert read_json(unzipped / "OUT" / "run_result.json")["status"] == "complete"

    notebook = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", NOTEBOOK, "executed.ipynb",
                               "-k", "python3"], cwd=unzipped, env=env, capture_output=True, text=True)
    assert notebook.returncode == 0, notebook.stderr[-3000:]
    assert read_json(unzipped / "output" / "kernel_run.json")["status"] == "complete"


@pytest.mark.kernel
def test_failed_notebook_still_gets_evidence_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A kernel that fails mid-run still gets evidence, a report and exit 1. The failure: an eval set the
    training script rejects, let through bundling here (bundle refuses it up front since issue 14, see
    test_hostile.py), so that it fails inside the kernel as any kernel-side error would."""
    from tunix_rt import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "check_eval_set_file", lambda path, shown=None: 1)
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
    assert RunState.read(run_dir).stage("execute").status == "failed"
    for name in EVIDENCE:  # a failed run's evidence is as portable as a complete one's
        text = (run_dir / name).read_text(encoding="utf-8")
        assert _leaks(text, run_dir) == [], name


# ------------------------------------------------------------------- Docker answers, the image does not


@pytest.fixture(scope="module")
def daemon() -> str:
    """The address of a Docker daemon that answers; skip (or fail in CI) without one."""
    if not docker_available():
        message = f"no Docker daemon answers at {docker_host()}"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}; .ci/run must start dockerd (docker/start_dockerd.sh)")
        pytest.skip(f"{message} (start one: eval \"$(docker/start_dockerd.sh)\")")
    return docker_host()


@pytest.mark.docker
def test_explicit_docker_that_cannot_build_exits_1_naming_the_daemon(daemon: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rehearse", "--backend", "docker", "--base-image", BOGUS_BASE, "--run-dir", str(tmp_path / "m33")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_KERNEL_FAILED
    assert len(err) == 1 and err[0].startswith("tunix-rt rehearse: error: docker build of tunix-rt/kernel:")
    assert f"at {daemon} failed" in err[0] and f"base image {BOGUS_BASE}" in err[0]
    assert "docker/make_base_image.sh" in err[0] and "--base-image tunix-rt/debian:bookworm" in err[0]
    assert RunState.read(tmp_path / "m33").stage("execute").status == "failed"


@pytest.mark.docker
def test_auto_falls_back_to_local_when_the_image_cannot_be_built(daemon: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "m33_rehearsal"
    code = main(["rehearse", "--backend", "auto", "--base-image", BOGUS_BASE, "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert f"backend: docker (auto: a Docker daemon answered at {daemon})" in out
    fallback = [line for line in out.splitlines() if line.startswith("backend: local (auto: falling back")]
    assert len(fallback) == 1 and f"at {daemon} failed" in fallback[0] and BOGUS_BASE in fallback[0]
    manifest = read_json(run_dir / "run_manifest.json")
    assert manifest["status"] == "complete" and manifest["environment"]["platform"] == "local"
    stage = RunState.read(run_dir).stage("execute")
    assert (stage.status, stage.details["backend"], stage.details["fallback_from"]) == ("done", "local", "docker")


def test_json_bad_input_ends_with_a_result_and_writes_nothing(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cli_json import json_lines

    run_dir = tmp_path / "m33_rehearsal"
    code = main(["rehearse", "--backend", "local", "--json", "--run-dir", str(run_dir), "--config", "nope.yaml"])
    assert code == 2
    objects = json_lines(capsys.readouterr().out, "rehearse", 2)
    assert {o["event"] for o in objects[:-1]} <= {"log"} and objects[-1]["run_dir"] == str(run_dir.resolve())
    assert "config nope.yaml: no such file" in objects[-1]["error"]
    assert not run_dir.exists()
