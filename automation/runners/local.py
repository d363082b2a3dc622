"""The local runner: execute the bundle's notebook with papermill in a subprocess, in Kaggle's layout.

What a Kaggle batch kernel sees, emulated without a container: papermill (Kaggle's own batch executor) runs
the notebook with the working directory ``<run-dir>/outputs`` (= ``/kaggle/working``), an empty read-only
input folder ``<tmp>/kaggle/input`` (= ``/kaggle/input``, passed as ``TUNIX_RT_INPUT_DIR``) and
``KAGGLE_KERNEL_RUN_TYPE=Batch``. The console goes live to the terminal and to
``<run-dir>/raw_log/console.log`` (credentials redacted); the kernel's temp files live in the emulated tree
(``TMPDIR``), which is removed afterwards.

The console shows those folders under the names they stand for (``/kaggle/working``, ``/kaggle/input``,
``/tmp``; :mod:`tunix_rt.hostpaths`), and papermill runs from the run directory with relative paths, so the
log of a local rehearsal reads like the Docker one and names no folder of this machine.

The kernel runs with this interpreter (``python -m papermill … -k python3``), so the training stack must be
installed here (the ``kernel`` extra); the notebook never pip-installs into it (``TUNIX_RT_NO_INSTALL``).

:func:`run_kernel_process` is the one place a kernel process is started, pumped and stopped: the local runner
uses it with stdout and stderr merged into one console, and the Kaggle emulator's executor
(``emulator/executor.py``) with them apart (as Kaggle logs them), a stop signal and the session timeout.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from ..errors import EXIT_USAGE, TunixRtError
from ..hostpaths import HostPaths, Rule, machine_rules
from ..layout import CONSOLE_LOG, EXECUTED_NOTEBOOK, NOTEBOOK_NAME, OUTPUTS_DIR, RAW_LOG_DIR
from ..redact import Redactor
from . import RunOutcome, compile_cache

KERNEL_NAME = "python3"
INTERRUPT_GRACE_S = 15.0  # papermill got SIGINT and shuts its kernel down; then its group is ended


def papermill_command(notebook: Path, out_notebook: Path, cwd: Path, *, log_output: bool = True) -> list[str]:
    """The papermill command line that executes ``notebook`` as a Kaggle batch run: no progress bar, the
    kernel started in ``cwd``, this interpreter's ``python3``. ``log_output``: cell output through papermill's
    logger (one console, the local runner); else the kernel's own stdout and stderr, kept apart (the
    emulator's Kaggle log has a stream per line, as Kaggle's does)."""
    cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(cwd), str(notebook),
           str(out_notebook), "-k", KERNEL_NAME]
    if log_output:
        return [*cmd[:3], "--log-output", *cmd[3:]]
    return [*cmd, "--stdout-file", "/dev/stdout", "--stderr-file", "/dev/stderr"]


def kernel_env(input_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ``base`` (default: this process's) without any ``KAGGLE_*`` variable (no
    credentials reach the kernel), plus Kaggle's batch marker and where ``/kaggle/input`` is."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("KAGGLE_")}
    env.update({
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "TUNIX_RT_INPUT_DIR": str(input_dir),
        "TUNIX_RT_NO_INSTALL": "1",  # a rehearsal must not pip-install into this environment
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    })
    return env


@dataclass(frozen=True)
class Execution:
    """How a kernel process ended: its exit code, wall time, and ``stopped`` ("stop", "timeout") when it
    was stopped rather than ending on its own."""

    exit_code: int
    wall_s: float
    stopped: str = ""


def _pump(pipe: IO[bytes], name: str, on_output: Callable[[str, str], None]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = pipe.fileno()
    while True:
        chunk = os.read(fd, 65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            on_output(name, text)
        if not chunk:
            return


def run_kernel_process(cmd: list[str], *, cwd: Path, env: Mapping[str, str],
                       on_output: Callable[[str, str], None], merge_stderr: bool = True,
                       own_group: bool = False, stop: threading.Event | None = None,
                       timeout_s: float | None = None) -> Execution:
    """Run a kernel process, handing its output to ``on_output(stream name, text)`` as it comes (from pump
    threads; "stdout" only when ``merge_stderr``). ``own_group``: a session of its own, stopped as a group
    (``stop`` set, ``timeout_s`` passed); else an interrupt of this process (Ctrl-C, or SIGTERM/SIGHUP, which
    interrupts.py turns into one) is passed on to it as SIGINT (a grace for papermill to stop its kernel), then
    its whole process group is ended (papermill, the kernel, the trainer) before the KeyboardInterrupt
    propagates. Either way the kernel runs in a process group of its own, so nothing it started outlives the
    command, whatever signal ended it. OSError when it cannot start."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            start_new_session=True)  # its own group: ended whole (see the docstring)
    pipes = [(proc.stdout, "stdout")] + ([] if merge_stderr else [(proc.stderr, "stderr")])
    pumps = [threading.Thread(target=_pump, args=(pipe, name, on_output), daemon=True) for pipe, name in pipes]
    for pump in pumps:
        pump.start()
    stopped = ""
    try:
        while proc.poll() is None:
            if stop is not None and stop.is_set():
                stopped = "stop"
            elif timeout_s is not None and time.monotonic() - start > timeout_s:
                stopped = "timeout"
            if stopped:
                _stop_group(proc, _descendants(proc.pid))
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
    except KeyboardInterrupt:
        tree = _descendants(proc.pid)  # before papermill ends: its kernel is then no longer found under it
        if not own_group:  # as a terminal's Ctrl-C would: papermill shuts its kernel down
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=INTERRUPT_GRACE_S)
        _stop_group(proc, tree)  # whatever is left: papermill's group, the kernel's session, the trainer
        raise
    finally:
        proc.wait()
        for pump in pumps:
            pump.join(timeout=5)
        for pipe, _ in pipes:
            if pipe is not None:
                pipe.close()
    return Execution(proc.returncode, time.monotonic() - start, stopped)


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid`` now (Linux ``/proc/<pid>/task/*/children``; empty elsewhere). Needed
    because jupyter_client starts each kernel in a session of its own: ending papermill's group alone
    would leave the kernel (and the trainer it runs) behind."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                kids = {int(k) for k in (task / "children").read_text().split()} - found
                found |= kids
                todo += kids
    return found


def _groups(proc: subprocess.Popen, tree: set[int]) -> set[int]:
    """The process groups to end: papermill's, and each one a process under it started (the kernel's)."""
    groups = {proc.pid}
    for pid in tree | _descendants(proc.pid):
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgrp())  # never our own
    return groups


def _stop_group(proc: subprocess.Popen, tree: set[int] | frozenset[int] = frozenset()) -> None:
    """Stop the kernel and everything it started: SIGTERM to papermill's group and to every group a process
    of ``tree`` (papermill's descendants, taken while it lived) is in, then SIGKILL to whatever is left."""
    groups = _groups(proc, set(tree))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        deadline = time.monotonic() + 3
        while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(_group_alive(g) for g in groups):
            return


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` is still there (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Console:
    """The merged console of a local run: whole lines, redacted, to the log file and the stream."""

    def __init__(self, log: TextIO, stream: TextIO | None, redactor: Redactor) -> None:
        self.log, self.stream, self.redactor = log, stream, redactor
        self.pending = ""

    def __call__(self, _name: str, text: str) -> None:
        complete, newline, self.pending = (self.pending + text).rpartition("\n")
        if newline:
            self._write(complete + newline)

    def close(self) -> None:
        if self.pending:
            self._write(self.pending)
            self.pending = ""

    def _write(self, text: str) -> None:
        text = self.redactor.redact(text)
        self.log.write(text)
        self.log.flush()
        if self.stream is not None:
            self.stream.write(text)
            self.stream.flush()


def run_local(bundle_dir: Path, run_dir: Path, *, jax_cache: str | None = None,
              stream: TextIO | None = sys.stdout) -> RunOutcome:
    """Execute ``<bundle_dir>/kaggle_submission.ipynb`` with papermill in a subprocess and return the outcome.

    ``jax_cache``: the compilation cache setting (a folder, or ``off``; None: ``$TUNIX_RT_JAX_CACHE``, else
    the default folder; see :mod:`.compile_cache`). A notebook failure is an outcome with papermill's non-zero
    exit code, not an exception; a missing bundle raises :class:`TunixRtError`. Ctrl-C stops papermill (and
    its kernel), then propagates.
    """
    bundle_dir = Path(bundle_dir).resolve()
    run_dir = Path(run_dir).resolve()
    notebook = bundle_dir / NOTEBOOK_NAME
    if not notebook.is_file():
        raise TunixRtError(f"{notebook}: the bundle's notebook is missing; run tunix-rt bundle first",
                           EXIT_USAGE)
    outputs_dir = run_dir / OUTPUTS_DIR
    log_path = run_dir / RAW_LOG_DIR / CONSOLE_LOG
    outputs_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    kaggle_root = Path(tempfile.mkdtemp(prefix="tunix-rt-kaggle-"))
    input_dir = kaggle_root / "kaggle" / "input"
    input_dir.mkdir(parents=True)
    input_dir.chmod(0o555)  # read-only, as Kaggle mounts it
    temp_dir = kaggle_root / "tmp"  # the kernel's temp files (its unpacked payload) go with the tree
    temp_dir.mkdir()
    env = kernel_env(input_dir)
    env["TMPDIR"] = str(temp_dir)
    cache = compile_cache.host_dir("local", jax_cache)
    if cache is not None and "JAX_COMPILATION_CACHE_DIR" not in env:  # a warm rehearsal skips recompiling
        env.update(compile_cache.kernel_env(cache))
    # papermill starts in the run directory and is given relative paths: its header then names
    # bundle/… and outputs/…, not this machine's folders.
    cmd = papermill_command(_relative(notebook, run_dir), Path(OUTPUTS_DIR) / EXECUTED_NOTEBOOK, Path(OUTPUTS_DIR))
    kaggle_names = HostPaths([Rule(str(outputs_dir), "/kaggle/working", "the working directory"),
                              Rule(str(input_dir), "/kaggle/input", "the input folder"),
                              Rule(str(temp_dir), "/tmp", "the kernel's temporary folder"),
                              *machine_rules(run_dir=run_dir)])
    _say(stream, f"local: running {notebook.name} with papermill; /kaggle/working is {outputs_dir}, "
                 f"/kaggle/input an empty read-only folder")
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            console = _Console(log, stream, Redactor(paths=kaggle_names))
            try:
                done = run_kernel_process(cmd, cwd=run_dir, env=env, on_output=console)
            except KeyboardInterrupt:
                _say(stream, "local: interrupted; papermill stopped")
                raise
            finally:
                console.close()
    finally:
        _remove_tree(kaggle_root)
    shown_log = _relative(log_path, run_dir)
    detail = f"papermill exit {done.exit_code}" + ("" if done.exit_code == 0 else f"; see {shown_log}")
    return RunOutcome("local", done.exit_code, outputs_dir, log_path, done.wall_s, detail)


def _relative(path: Path, base: Path) -> Path:
    """``path`` relative to ``base`` when inside it (how the run directory's own files are named)."""
    try:
        return path.relative_to(base)
    except ValueError:
        return path


def _remove_tree(root: Path) -> None:
    """Remove the emulated /kaggle tree, making its read-only folders writable first."""
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    shutil.rmtree(root, ignore_errors=True)


def _say(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()
