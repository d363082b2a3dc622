"""Runs one pushed kernel version the way Kaggle would, in a folder laid out like /kaggle.

Layout of a version folder (``<data>/kernels/<owner>/<slug>/v<N>/``)::

    source.ipynb | source.py    what SaveKernel received (``text``)
    input/                      read-only (datasets/models the emulator hosts are linked here)
    working/                    the current directory of the run = the outputs served afterwards
    __notebook__.ipynb          the executed notebook (papermill's output; not an output file)
    log.json                    the Kaggle-format log

Notebooks run through papermill, scripts through ``python``, with the local runner's process code
(runners/local.py ``run_kernel_process``: the same papermill command and kernel environment as a rehearsal);
stdout and stderr are captured in chunks with their time since start into the Kaggle log.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunix_rt.emulator.kaggle_log import KaggleLogWriter
from tunix_rt.layout import EXECUTED_NOTEBOOK
from tunix_rt.runners.local import kernel_env as runner_env
from tunix_rt.runners.local import papermill_command, run_kernel_process

_SECRET_ENV = (
    "KAGGLE_KEY",
    "KAGGLE_USERNAME",
    "KAGGLE_API_TOKEN",
    "KAGGLE_API_ENVIRONMENT",
    "KAGGLE_CONFIG_DIR",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
)


@dataclass
class Job:
    """One version to execute."""

    kernel_type: str  # "notebook" | "script"
    source: Path
    version_dir: Path
    timeout_s: float | None = None  # the kernel's session timeout
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def input_dir(self) -> Path:
        return self.version_dir / "input"

    @property
    def working_dir(self) -> Path:
        return self.version_dir / "working"

    @property
    def log_path(self) -> Path:
        return self.version_dir / "log.json"

    @property
    def executed_notebook(self) -> Path:
        return self.version_dir / EXECUTED_NOTEBOOK


@dataclass(frozen=True)
class Result:
    ok: bool
    failure_message: str = ""


# A replacement for real execution (tests): called with the job and its open log writer.
ExecuteFn = Callable[[Job, KaggleLogWriter, threading.Event], Result]


def kernel_env(input_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the kernel process: the local runner's (a Kaggle batch session) without the caller's
    credentials or proxy, then the job's ``extra`` (a test's own variables)."""
    env = {k: v for k, v in runner_env(input_dir).items() if k not in _SECRET_ENV}
    env.update(extra or {})
    return env


def command_for(job: Job) -> list[str]:
    """A script runs with ``python -u``; a notebook with the local runner's papermill command, its cell
    output on the kernel's own stdout and stderr (the Kaggle log keeps them apart)."""
    if job.kernel_type == "script":
        return [sys.executable, "-u", str(job.source)]
    return papermill_command(job.source, job.executed_notebook, job.working_dir, log_output=False)


def _last_error_line(tail: list[str]) -> str:
    lines = [ln.strip() for ln in "".join(tail).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def execute(job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
    """Run the job's source in its working folder (the local runner's process code); the outcome as Kaggle
    would report it."""
    job.working_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tail: list[str] = []

    def on_output(name: str, text: str) -> None:
        log.write(name, time.monotonic() - start, text)
        if name == "stderr":
            tail.append(text)
            del tail[:-20]

    try:
        done = run_kernel_process(command_for(job), cwd=job.working_dir,
                                  env=kernel_env(job.input_dir, job.extra_env), on_output=on_output,
                                  merge_stderr=False, own_group=True, stop=stop, timeout_s=job.timeout_s)
    except OSError as exc:
        return Result(False, f"Kernel could not start: {exc}")
    if done.stopped == "stop":
        return Result(False, "The session was stopped (emulator shut down).")
    if done.stopped == "timeout":
        return Result(False, f"Your notebook exceeded the session timeout of {job.timeout_s:g} seconds.")
    if done.exit_code != 0:
        detail = _last_error_line(tail)
        msg = f"Kernel exited with code {done.exit_code}"
        return Result(False, f"{msg}: {detail}" if detail else msg)
    return Result(True)
