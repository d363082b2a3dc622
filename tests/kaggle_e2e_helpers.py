"""Helpers for the Kaggle end-to-end tests: a tiny hand-made bundle and the ``tunix-rt`` CLI in a
subprocess, pointed at the emulator with its recipe-A environment (the real kaggle client, no patching).

Also a pytest plug-in (conftest.py): the fixtures ``emu`` (an emulator answering like Kaggle, queue 0.3 s),
``run_dir`` (a run folder inside the checkout, removed after) and ``good_bundle``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from run_fixtures import CONFIG_PATH, write_finished_run
from tunix_rt.bundle import PAYLOAD_TAG, build_payload, payload_files, render_notebook
from tunix_rt.emulator.app import Emulator
from tunix_rt.fsutil import sha256_file

REPO = Path(__file__).resolve().parent.parent
EVAL_SET_PATH = "training/evalsets/eval_v1.jsonl"  # the repository's, as the tiny bundle's payload holds it

FAKE_KEY = "f4k3kaggle0key0do0not0leak0123456789"  # the fake KAGGLE_KEY: must never appear in any output
USER = "alice"

# Fast knobs for the CLI under test (see tunix_rt.retry / tunix_rt.wait docstrings).
FAST_ENV = {
    "TUNIX_RT_RETRY_BASE_S": "0.05",
    "TUNIX_RT_RETRY_MAX_WAIT_S": "0.2",
    "TUNIX_RT_RETRY_ATTEMPTS": "10",
    "TUNIX_RT_API_TIMEOUT_S": "5",
    "TUNIX_RT_STALE_GRACE_S": "20",
    "TUNIX_RT_PUSH_SETTLE_S": "2",  # a push whose reply never came: look for its version 2 s, not 5 min
    "PYTHONUNBUFFERED": "1",
}
POLL = ["--poll-min", "0.1", "--poll-max", "0.3"]
SLUG = "tiny-kernel"
REF = f"{USER}/{SLUG}"


def training_outputs(run_name: str, tmp: Path) -> dict[str, str]:
    """Plausible training outputs (run_fixtures' contract) for a run folder called ``run_name``, naming the
    repository's real sft_tiny config and eval set (with their sha256) so the run can be packaged."""
    proto = write_finished_run(tmp / "proto" / run_name, platform="emulator")
    out = proto / "outputs" / "output"
    config_sha = sha256_file(REPO / CONFIG_PATH)
    eval_sha = sha256_file(REPO / EVAL_SET_PATH)
    result = json.loads((out / "run_result.json").read_text(encoding="utf-8"))
    result["config"]["sha256"] = config_sha
    result["eval_set"]["sha256"] = eval_sha
    (out / "run_result.json").write_text(json.dumps(result), encoding="utf-8")
    evals = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))
    evals["eval_set_sha256"] = eval_sha
    (out / "eval_results.json").write_text(json.dumps(evals), encoding="utf-8")
    return {f"output/{p.name}": p.read_text(encoding="utf-8") for p in sorted(out.iterdir())}


def repo_run_dir(name: str = "run") -> Path:
    """A run folder inside the checkout (packaging refuses run folders outside the project), hidden so
    ``tunix-rt validate`` with no arguments skips it; the caller removes its parent."""
    return REPO / "submission_runs" / f".pytest-{uuid.uuid4().hex[:10]}" / name


@cache
def _payload() -> bytes:
    """The real payload for sft_tiny + eval_v1 (what `tunix-rt package` ships from the bundle that ran)."""
    return build_payload(payload_files(REPO / CONFIG_PATH, REPO / EVAL_SET_PATH))


def make_bundle(folder: Path, *, files: dict[str, str] | None = None, fail: str | None = None,
                sleep_s: float = 0.0, model_sources: list[str] | None = None, n_extra: int = 0,
                code: str | None = None) -> Path:
    """A pushable bundle whose notebook writes ``files`` (name → text) in about a second.

    ``fail``: raise this message after writing; ``sleep_s``: sleep first; ``n_extra``: also write that many
    small files under ``extra/`` (paging tests); ``code``: this cell's code instead (test_chain's sessions)."""
    code = code or (
        "import json, os, pathlib, time\n"
        f"time.sleep({sleep_s!r})\n"
        f"files = json.loads({json.dumps(json.dumps(files or {}))})\n"
        "for name, text in files.items():\n"
        "    p = pathlib.Path(name); p.parent.mkdir(parents=True, exist_ok=True); p.write_text(text)\n"
        f"for i in range({n_extra}):\n"
        "    p = pathlib.Path('extra') / f'file_{i:03d}.txt'\n"
        "    p.parent.mkdir(exist_ok=True); p.write_text(str(i))\n"
        "print('tiny kernel wrote', len(files), 'files', flush=True)\n"
        + (f"raise RuntimeError({fail!r})\n" if fail else "")
    )
    cell = {"cell_type": "code", "execution_count": None, "id": "tiny", "metadata": {}, "outputs": [],
            "source": code}
    # A tunix-rt bundle notebook (parameters and the embedded payload, which the zip ships) running the tiny code.
    params = {"mode": "smoke", "config": "configs/sft_tiny.yaml", "dataset": "dev-reasoning-v2",
              "eval_set": "evalsets/eval_v1.jsonl", "run_version": "tiny", "session_timeout_s": None}
    nb = json.loads(render_notebook(params, _payload()))
    nb["cells"] = [c for c in nb["cells"] if PAYLOAD_TAG in c["metadata"].get("tags", [])] + [cell]
    nb["metadata"]["kaggle"] = {"accelerator": "gpu", "dockerImageVersionId": 31234}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kaggle_submission.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    meta: dict[str, Any] = {"id": "someone/else", "title": "tiny", "code_file": "kaggle_submission.ipynb",
                            "language": "python", "kernel_type": "notebook",
                            "docker_image": "gcr.io/x:pinned"}
    if model_sources is not None:
        meta["model_sources"] = model_sources
    (folder / "kernel-metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def cli_env(emulator: Any, *, key: str | None = FAKE_KEY, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["KAGGLE_CONFIG_DIR"] = os.environ["KAGGLE_CONFIG_DIR"]  # conftest's per-test scratch folder
    env.update(emulator.client_env(user=USER, key=key or "x"))
    if key is None:
        env.pop("KAGGLE_USERNAME", None)
        env.pop("KAGGLE_KEY", None)
    env.update(FAST_ENV)
    env.update(extra)
    return env


def tunix_rt(env: dict[str, str], *args: str, timeout: float = 120) -> Result:
    proc = subprocess.run([sys.executable, "-m", "tunix_rt", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tunix_rt_popen(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tunix_rt", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run_state.json").read_text(encoding="utf-8"))


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` (zips included, as bytes) that contains ``needle``."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes():
            hits.append(path)
    return hits


def push_args(run_dir: Path, bundle: Path, accelerator: str = "gpu-t4x2", *extra: str,
              kernel_id: str = REF) -> list[str]:
    return ["--kernel-id", kernel_id, "--accelerator", accelerator, "--bundle", str(bundle),
            "--run-dir", str(run_dir), *extra]


def versions(emu: Emulator, owner: str = USER, slug: str = SLUG) -> list[int]:
    out, n = [], 1
    while emu.version(owner, slug, n) is not None:
        out.append(n)
        n += 1
    return out


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path / "kaggle", queue_seconds=0.3).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Inside the checkout (submission_runs/.pytest-*/run): the package stage refuses outside folders."""
    path = repo_run_dir()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture
def good_bundle(tmp_path: Path, run_dir: Path) -> Path:
    return make_bundle(tmp_path / "bundle", files=training_outputs(run_dir.name, tmp_path))
