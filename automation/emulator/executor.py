"""Runs one pushed kernel version the way Kaggle would, in a folder laid out like /kaggle.

Layout of a version folder (``<data>/kernels/<owner>/<slug>/v<N>/``)::

    source.ipynb | source.py    what SaveKernel received (``text``)
    input/                      read-only (datasets/models the emulator hosts are linked here)
    working/                    the current directory of the run = the outputs served afterwards
    __notebook__.ipynb          the executed notebook (papermill's output; not an output file)
    log.json                    the Kaggle-format log

Notebooks run through papermill, scripts through ``python``; stdout and stderr are captured in chunks
with their time since start into the Kaggle log.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunix_rt.emulator.kaggle_log import KaggleLogWriter

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
        return self.version_dir / "__notebook__.ipynb"


@dataclass(frozen=True)
class Result:
    ok: bool
    failure_message: str = ""


# A replacement for real execution (tests): called with the job and its open log writer.
ExecuteFn = Callable[[Job, KaggleLogWriter, threading.Event], Result]


def papermill_command(notebook: Path, out_notebook: Path, cwd: Path) -> list[str]:
    """The papermill command line: the local runner's (so rehearsal and emulator run notebooks alike), with
    cell output sent to the process's own stdout/stderr instead of papermill's logger, so the Kaggle log
    keeps print() output on ``stdout`` and warnings on ``stderr`` as a Kaggle session does."""
    try:
        from tunix_rt.runners.local import papermill_command as runner_command
    except ImportError:
        runner_command = None
    if runner_command is not None:
        cmd = [arg for arg in runner_command(notebook, out_notebook, cwd) if arg != "--log-output"]
    else:
        cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(cwd), str(notebook),
               str(out_notebook), "-k", "python3"]
    return [*cmd, "--stdout-file", "/dev/stdout", "--stderr-file", "/dev/stderr"]


def kernel_env(input_dir: Path) -> dict[str, str]:
    """Environment of the kernel process: like a Kaggle batch session, without the caller's credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k not in _SECRET_ENV}
    try:
        from tunix_rt.runners.local import kernel_env as runner_env
    except ImportError:
        runner_env = None
    if runner_env is not None:
        env.update(runner_env(input_dir))
    for key in _SECRET_ENV:  # whatever the runner passed through, credentials never reach the kernel
        env.pop(key, None)
    env["KAGGLE_KERNEL_RUN_TYPE"] = "Batch"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command_for(job: Job) -> list[str]:
    if job.kernel_type == "script":
        return [sys.executable, "-u", str(job.source)]
    return papermill_command(job.source, job.executed_notebook, job.working_dir)


def _pump(stream, name: str, start: float, log: KaggleLogWriter, tail: list[str]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            log.write(name, time.monotonic() - start, text)
            if name == "stderr":
                tail.append(text)
                del tail[:-20]
        if not chunk:
            return


def _last_error_line(tail: list[str]) -> str:
    lines = [ln.strip() for ln in "".join(tail).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def execute(job: Job, log: KaggleLogWriter, stop: threading.Event) -> Result:
    """Run the job's source in its working folder; the outcome as Kaggle would report it."""
    job.working_dir.mkdir(parents=True, exist_ok=True)
    env = kernel_env(job.input_dir)
    env.update(job.extra_env)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            command_for(job),
            cwd=job.working_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return Result(False, f"Kernel could not start: {exc}")
    tail: list[str] = []
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, "stdout", start, log, tail), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "stderr", start, log, tail), daemon=True),
    ]
    for t in pumps:
        t.start()
    reason = ""
    while proc.poll() is None:
        if stop.wait(0.1):
            reason = "The session was stopped (emulator shut down)."
        elif job.timeout_s is not None and time.monotonic() - start > job.timeout_s:
            reason = f"Your notebook exceeded the session timeout of {job.timeout_s:g} seconds."
        if reason:
            _kill_group(proc)
            break
    proc.wait()
    for t in pumps:
        t.join(timeout=5)
    if reason:
        return Result(False, reason)
    if proc.returncode != 0:
        detail = _last_error_line(tail)
        msg = f"Kernel exited with code {proc.returncode}"
        return Result(False, f"{msg}: {detail}" if detail else msg)
    return Result(True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the kernel and everything it started (papermill's ipykernel too)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue
