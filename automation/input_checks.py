"""Bad input found before any work: the run directory, the output folder and the eval set, each one line, exit 2.

Found late, each of these cost a whole kernel session: a run directory whose name cannot be a ``run_version``
(the evidence schemas' pattern, e.g. a space) failed only at validation, after the kernel ran; ``--run-dir ""``
silently meant the default folder; a run directory that is a file or cannot be written failed as "kernel
failed" (exit 1); a broken or empty eval set passed ``bundle``/``push`` and failed on Kaggle; a zip written
into the run directory would end up inside the evidence it packages.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
from pathlib import Path

from . import paths
from .errors import EXIT_USAGE, TunixRtError

# The evidence schemas' run_version pattern (schemas/*.json): the run directory's name is the run version.
RUN_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100  # characters of a run directory's name (it is also the zip's prefix and a notebook parameter)


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def run_dir_arg(value: str | None, default_run: str, *, must_exist: bool = False) -> Path:
    """``--run-dir`` checked before any work: not empty, a name that can be the run version, not a file,
    writable or creatable (``must_exist``, wait/pull: a missing one is left to the verb, which says nothing was
    pushed); ``None`` means ``submission_runs/<default_run>``."""
    if value is None:
        run_dir = paths.default_run_dir(default_run)
    elif not value.strip():
        raise TunixRtError(f"--run-dir {_shown(value)}: empty; give a folder (default: submission_runs/"
                           f"{default_run})", EXIT_USAGE)
    else:
        run_dir = Path(value).expanduser()
    name = run_dir.resolve().name
    if not RUN_VERSION_RE.match(name) or len(name) > MAX_NAME:
        raise TunixRtError(f"--run-dir {_shown(str(value if value is not None else run_dir))}: the folder's name "
                           f"{_shown(name)} is the run version and must be letters, digits, '.', '_' or '-' "
                           f"(starting with a letter or digit, at most {MAX_NAME} characters), e.g. m33_v1",
                           EXIT_USAGE)
    if must_exist and not run_dir.exists():
        return run_dir  # wait/pull: the verb itself says "nothing pushed yet", after its own flag checks
    check_writable_dir(run_dir, "--run-dir")
    return run_dir


def check_writable_dir(folder: Path, flag: str) -> None:
    """``folder`` is a folder this process can write in, or one it can create; else exit 2. Nothing is
    created here: a refused command leaves no trace."""
    if folder.exists() and not folder.is_dir():
        raise TunixRtError(f"{flag} {folder}: is a file, not a folder", EXIT_USAGE)
    if not folder.exists():
        parent = folder.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise TunixRtError(f"{flag} {folder}: {parent} is a file, not a folder", EXIT_USAGE)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TunixRtError(f"{flag} {folder}: cannot be created ({parent} is not writable)", EXIT_USAGE)
        return
    try:  # os.access says yes to root whatever the mode; only a real write tells (immutable, read-only mounts)
        fd, probe = tempfile.mkstemp(prefix=".tunix-rt-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TunixRtError(f"{flag} {folder}: cannot be written ({exc.strerror or type(exc).__name__})",
                           EXIT_USAGE) from None


def output_arg(output: str, run_dir: Path) -> Path:
    """``--output`` checked: not empty, not inside the run directory (the zip would be packaged into the
    evidence it packages, and validate would read it), not a file."""
    if not output.strip():
        raise TunixRtError(f"--output {_shown(output)}: empty; give a folder for the zip", EXIT_USAGE)
    out = Path(output).expanduser()
    if out.resolve().is_relative_to(Path(run_dir).resolve()):
        raise TunixRtError(f"--output {output}: inside the run directory {run_dir}; write the zip elsewhere "
                           "(default: submission)", EXIT_USAGE)
    if out.exists() and not out.is_dir():
        raise TunixRtError(f"--output {output}: is a file, not a folder", EXIT_USAGE)
    return out


def check_eval_set_file(path: Path, shown: str | None = None) -> int:
    """The eval set at ``path`` parses and has items (training's own reader); its item count."""
    from tunix_rt.training.evalset import EvalSetError, load_eval_set  # light: json only

    try:
        return len(load_eval_set(path))
    except EvalSetError as exc:
        raise TunixRtError(_first_line(str(exc) if shown is None else str(exc).replace(str(path), shown)),
                           EXIT_USAGE) from None


def check_payload_eval_set(payload: bytes, rel: str, shown: str) -> int:
    """The eval set ``rel`` (``training/evalsets/…``) inside a bundle's payload parses and has items."""
    from tunix_rt.training.evalset import EvalSetError, parse_eval_set

    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            member = tar.getmember(rel)
            extracted = tar.extractfile(member) if member.isfile() else None
            data = extracted.read() if extracted is not None else None
    except (KeyError, tarfile.TarError, OSError):
        data = None
    if data is None:
        raise TunixRtError(f"{shown}: the payload holds no eval set {rel!r}; rebuild the bundle with "
                           "`tunix-rt bundle`", EXIT_USAGE)
    try:
        return len(parse_eval_set(data.decode("utf-8"), f"{rel} (in {shown})"))
    except UnicodeDecodeError:
        raise TunixRtError(f"eval set {rel} (in {shown}): not UTF-8 text", EXIT_USAGE) from None
    except EvalSetError as exc:
        raise TunixRtError(_first_line(str(exc)), EXIT_USAGE) from None


def _first_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:299] + "…"
