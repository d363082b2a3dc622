"""Pytest fixtures around the Kaggle API emulator (a plug-in loaded by conftest.py).

Fixtures:
- ``kaggle_emulator``: an :class:`Emulator` started in ``tmp_path`` (queue 0.3 s, no faults), stopped after.
- ``make_emulator``: ``make_emulator(**Emulator kwargs) -> Emulator`` for other faults/auth/sources; all
  started ones are stopped after the test.
- ``kaggle_cli``: ``kaggle_cli(*args, emulator=None, user="alice", key="emulator-key", token=None,
  env=None, cwd=None) -> CompletedProcess`` runs the real ``kaggle`` CLI in a subprocess pointed at the
  emulator (recipe A: KAGGLE_API_ENVIRONMENT=LOCALHOST + HTTP_PROXY), with its own KAGGLE_CONFIG_DIR.
- ``emulator_env``: puts the emulator's recipe-A variables (user alice) into ``os.environ`` for the test,
  for tunix-rt commands run in a subprocess (or in process, see the note below). Returns the dict.
- ``kaggle_api``: an in-process, authenticated ``KaggleApi`` (user alice) talking to ``kaggle_emulator``
  through recipe B (kagglesdk's endpoints patched while the test runs).

Helpers (import from ``emulator_fixtures``): :func:`notebook_json`, :func:`write_kernel`, :class:`FakeRun`.

Note for in-process callers: ``kaggle`` reads ``KAGGLE_API_ENVIRONMENT`` once, when first imported in the
process (``KaggleApi.args``); later tests setting it have no effect. ``emulator.patch_client()`` (recipe B)
works whatever was imported first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tunix_rt.emulator import Emulator
from tunix_rt.emulator.executor import Job, Result
from tunix_rt.emulator.kaggle_log import KaggleLogWriter

DEFAULT_USER = "alice"
DEFAULT_KEY = "emulator-key"


def notebook_json(*cells: str) -> str:
    """A minimal nbformat-4 notebook (python3 kernel) with one code cell per string."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {},
                   "outputs": [], "source": src} for i, src in enumerate(cells)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(nb, indent=1)


def write_kernel(folder: Path, kernel_id: str, source: str, *, kernel_type: str = "notebook",
                 title: str | None = None, **metadata: Any) -> Path:
    """A pushable kernel folder: ``kernel-metadata.json`` plus the code file (``source`` is the notebook
    JSON for notebooks, the script text for scripts). Extra metadata keys go in as given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    code_file = "kernel.ipynb" if kernel_type == "notebook" else "kernel.py"
    (folder / code_file).write_text(source, encoding="utf-8")
    slug = kernel_id.split("/", 1)[1]
    meta = {"id": kernel_id, "title": title or slug.replace("-", " ").title(), "code_file": code_file,
            "language": "python", "kernel_type": kernel_type, "is_private": True, "enable_internet": False,
            **metadata}
    (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


class FakeRun:
    """A stand-in for executing a kernel (``Emulator(execute_fn=FakeRun(...))``): writes ``outputs`` into
    the working folder and ``stdout`` lines into the log, then finishes, or, when ``gated``, stays RUNNING
    until :meth:`release`. Use it to emulate long runs or exact outputs without running anything."""

    def __init__(self, outputs: Mapping[str, bytes] | None = None, stdout: list[str] | None = None,
                 fail: str | None = None, gated: bool = False) -> None:
        self.outputs = dict(outputs or {})
        self.stdout = list(stdout or ["fake kernel run\n"])
        self.fail = fail
        self._gate = threading.Event()
        if not gated:
            self._gate.set()
        self.started = threading.Event()
        self.jobs: list[Job] = []

    def release(self) -> None:
        self._gate.set()

    def __call__(self, job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
        self.jobs.append(job)
        start = time.monotonic()
        self.started.set()
        for line in self.stdout:
            log.write("stdout", time.monotonic() - start, line)
        while not self._gate.wait(0.05):
            if stop.is_set():
                return Result(False, "The session was stopped (emulator shut down).")
        for name, data in self.outputs.items():
            path = job.working_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if self.fail:
            log.write("stderr", time.monotonic() - start, self.fail + "\n")
            return Result(False, self.fail)
        return Result(True)


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("queue_seconds", 0.3)
        emu = Emulator(tmp_path / f"kaggle_emulator_{len(started)}", **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def kaggle_emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def kaggle_cli(kaggle_emulator: Emulator, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    config_dir = tmp_path / "kaggle_cli_config"
    config_dir.mkdir(exist_ok=True)

    def run(*args: str, emulator: Emulator | None = None, user: str = DEFAULT_USER, key: str = DEFAULT_KEY,
            token: str | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        emu = emulator or kaggle_emulator
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
        full_env.update(emu.client_env(user=user, key=key, token=token))
        full_env["KAGGLE_CONFIG_DIR"] = str(config_dir)
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "kaggle", *args], env=full_env, cwd=cwd or tmp_path,
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def emulator_env(kaggle_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = kaggle_emulator.client_env(user=DEFAULT_USER, key=DEFAULT_KEY)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def kaggle_api(kaggle_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("KAGGLE_USERNAME", DEFAULT_USER)
    monkeypatch.setenv("KAGGLE_KEY", DEFAULT_KEY)
    for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    with kaggle_emulator.patch_client():
        yield api
