"""Exit codes and the one exception type for expected failures.

Every command raises :class:`TunixRtError` for a problem the user can fix or must know about; the CLI
catches it once, prints its one-line message and exits with its code. Tracebacks are for bugs only.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_KERNEL_FAILED = 1  # the kernel ended in ERROR or was cancelled; a rehearsal failed or Docker could not run it
EXIT_USAGE = 2  # usage error or bad input (flags, config, files, evidence)
EXIT_TIMEOUT = 3  # the overall deadline passed (or a chain of sessions ran out of sessions)
EXIT_AUTH = 4  # missing or rejected Kaggle credentials
EXIT_API = 5  # a Kaggle API call still failed after retries
EXIT_INTERNAL = 70  # a bug: an unexpected exception (sysexits' EX_SOFTWARE); one redacted line, traceback saved

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_KERNEL_FAILED: "kernel ERROR or cancelled (or a rehearsal failed, or Docker could not run it)",
    EXIT_USAGE: "usage error or bad input",
    EXIT_TIMEOUT: "timeout (overall deadline passed, or a chain ran out of sessions)",
    EXIT_AUTH: "missing or rejected Kaggle credentials",
    EXIT_API: "Kaggle API failure after retries",
    EXIT_INTERNAL: "internal error (a bug): one redacted line; the redacted traceback is in the run directory",
}


class TunixRtError(Exception):
    """An expected failure: a one-line message and the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = " ".join(str(message).split())  # always one line
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
