"""One process per run directory: an OS lock held for the whole command by every verb that writes one.

Two ``tunix-rt run`` processes on one run directory would both push (v1 and v2) and interleave their writes
to run_state.json. So every verb that writes a run directory (bundle, rehearse, push, wait, pull, run,
report) takes :func:`hold` first: an exclusive, non-blocking ``fcntl.flock`` on ``<run-dir>/.tunix-rt.lock``.
A second command on the same run directory exits 2 at once, naming the holder (pid, command, since) that the
lock file records.

Why flock: the kernel releases it when the holder's process ends in any way (Ctrl-C, SIGKILL, a crash), so a
stale lock never needs clearing by hand; a killed holder's file may stay behind with its old contents, and
the next holder simply takes it over.

The lock file is removed when the command ends; a run directory that the lock itself created and that is
still empty then is removed too, so a command refused before it wrote anything leaves nothing behind. The
remove-on-release race (a waiter locking a file already unlinked) is closed by checking, after locking, that
the path still names the locked file (the usual flock idiom).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import EXIT_USAGE, TunixRtError

LOCK_NAME = ".tunix-rt.lock"
COMMAND_CHARS = 200  # the holder's command line as recorded (and shown) at most


def _holder(path: Path) -> str:
    """``pid N (command) since T`` from the lock file, as well as it can be read."""
    try:
        info = json.loads(path.read_text(encoding="utf-8", errors="replace") or "{}")
    except (OSError, ValueError, RecursionError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another tunix-rt process"
    return f"pid {info.get('pid')} ({str(info.get('command', '?'))[:COMMAND_CHARS]}) since {info.get('since', '?')}"


def _make_dirs(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` (and missing parents); the folders created, deepest first. Exit 2 when it cannot be
    a folder (a file is in the way) or cannot be written."""
    created: list[Path] = []
    missing = [p for p in [run_dir, *run_dir.parents] if not p.exists()]
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.insert(0, folder)
    except FileExistsError:
        pass  # another process made it first: it is not ours to remove
    except OSError as exc:
        raise TunixRtError(f"{run_dir}: cannot create the run directory ({exc.strerror})", EXIT_USAGE) from None
    if not run_dir.is_dir():
        raise TunixRtError(f"{run_dir}: the run directory is not a folder", EXIT_USAGE)
    return created


def _acquire(path: Path) -> int:
    """An fd on ``path`` holding its exclusive flock (see the module docstring); exit 2 when held."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)  # the folder went away with a holder's cleanup
            continue
        except OSError as exc:
            raise TunixRtError(f"{path.parent}: cannot write the run directory ({exc.strerror})",
                               EXIT_USAGE) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TunixRtError(f"{path.parent}: in use by {_holder(path)}; one command per run directory at a "
                                   "time: wait for it to end (or stop it), then run again", EXIT_USAGE) from None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file its holder had just removed: lock the one at the path now


@contextlib.contextmanager
def hold(run_dir: Path, command: str, *, create: bool = True) -> Iterator[Path | None]:
    """Hold ``run_dir``'s lock while the block runs (see the module docstring); yields the lock file's path.
    Exit 2 at once when another process holds it, or when the run directory cannot be one. ``create``
    False: a run directory that does not exist is not made (yields None; the command says what is missing)."""
    run_dir = Path(run_dir)
    if not create and not run_dir.is_dir():
        yield None
        return
    created = _make_dirs(run_dir)
    path = run_dir / LOCK_NAME
    fd = _acquire(path)
    try:
        line = " ".join(["tunix-rt", command, *sys.argv[2:]])[:COMMAND_CHARS]
        record = {"pid": os.getpid(), "command": line,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding the lock: a waiter that opened it re-checks the path (above)
        os.close(fd)
        for folder in created:  # a refused first command leaves no empty run directory behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def locked(run_dir: Path, command: str, body: Callable[[], int], *, create: bool = True) -> Callable[[], int]:
    """``body`` run while holding ``run_dir``'s lock (:func:`hold`): what a command hands ``Reporter.run``."""

    def run() -> int:
        with hold(run_dir, command, create=create):
            return body()

    return run
