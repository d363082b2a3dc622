"""What the user sees when tunix-rt has a bug: one redacted line and exit :data:`EXIT_INTERNAL`, never a traceback.

An exception that is not a :class:`~tunix_rt.errors.TunixRtError` may quote anything it touched: a credential
(``OSError: File name too long: '<token>'``), a path of this machine, a hostile log line. The CLI prints one line
(the exception's type and message, redacted and cut to :data:`MAX_LINE` characters) and writes the whole
traceback, redacted and with this machine's folders rewritten, to ``<run-dir>/tunix_rt_traceback.txt`` when the
command has a run directory that exists (never anywhere else: tunix-rt writes only inside run directories).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from .errors import EXIT_INTERNAL
from .layout import TRACEBACK_FILE

MAX_LINE = 200  # characters of the exception's message on the console


def _redactor(run_dir: Path | None):  # noqa: ANN202 - Redactor, imported lazily (start-up stays light)
    from . import hostpaths, paths
    from .redact import Redactor

    try:
        machine = hostpaths.for_evidence(run_dir, paths.project_root())
    except Exception:  # noqa: BLE001 - the crash report must not crash
        machine = None
    return Redactor(paths=machine)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def report(command: str, exc: BaseException, run_dir: str | os.PathLike[str] | None) -> tuple[str, int]:
    """The one console line for an unexpected ``exc`` and its exit code; saves the redacted traceback in
    ``run_dir`` (if it is an existing, writable folder)."""
    folder = Path(run_dir) if run_dir else None
    if folder is not None and not folder.is_dir():
        folder = None
    redact = _redactor(folder).redact
    what = _short(redact(f"{type(exc).__name__}: {exc}"))
    where = "no run directory to save the traceback in"
    if folder is not None:
        from .fsutil import write_atomic

        text = redact("".join(traceback.format_exception(exc)))
        try:
            write_atomic(folder / TRACEBACK_FILE, text)
            where = f"traceback in {redact(str(folder / TRACEBACK_FILE))}"
        except OSError as err:
            where = f"the traceback could not be saved ({type(err).__name__})"
    return (f"tunix-rt {command}: internal error (a bug, please report it): {what}; {where}", EXIT_INTERNAL)
