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
The Kaggle emulator reuses :func:`papermill_command` and :func:`kernel_env`.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ..errors import EXIT_USAGE, TunixRtError
from ..hostpaths import HostPaths, Rule, machine_rules
from ..redact import Redactor
from ..runstate import OUTPUTS_DIR, RAW_LOG_DIR
from . import RunOutcome, compile_cache

NOTEBOOK = "kaggle_submission.ipynb"
EXECUTED_NOTEBOOK = "__notebook__.ipynb"  # papermill's executed copy, in the working dir as on Kaggle
CONSOLE_LOG = "console.log"
KERNEL_NAME = "python3"


def papermill_command(notebook: Path, out_notebook: Path, cwd: Path) -> list[str]:
    """The papermill command line that executes ``notebook`` as a Kaggle batch run: cell output logged live
    (``--log-output``), no progress bar, the kernel started in ``cwd``, this interpreter's ``python3``."""
    return [sys.executable, "-m", "papermill", "--log-output", "--no-progress-bar", "--cwd", str(cwd),
            str(notebook), str(out_notebook), "-k", KERNEL_NAME]


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
    notebook = bundle_dir / NOTEBOOK
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
    redactor = Redactor(paths=kaggle_names)
    _say(stream, f"local: running {notebook.name} with papermill; /kaggle/working is {outputs_dir}, "
                 f"/kaggle/input an empty read-only folder")
    started = time.monotonic()
    try:
        with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=run_dir, env=env,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        ) as proc:
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = redactor.redact(line)
                    log.write(line)
                    log.flush()
                    if stream is not None:
                        stream.write(line)
                        stream.flush()
            except KeyboardInterrupt:
                # papermill got the same Ctrl-C (one process group) and shuts its kernel down; give it a
                # moment, then make sure it is gone.
                _say(stream, "local: interrupted; stopping papermill")
                for stop, grace in ((None, 15), (proc.terminate, 5), (proc.kill, None)):
                    if stop is not None:
                        stop()
                    try:
                        proc.wait(timeout=grace)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                raise
        exit_code = proc.returncode
    finally:
        wall_s = time.monotonic() - started
        _remove_tree(kaggle_root)
    detail = f"papermill exit {exit_code}" + ("" if exit_code == 0 else f"; see {_relative(log_path, run_dir)}")
    return RunOutcome("local", exit_code, outputs_dir, log_path, wall_s, detail)


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
