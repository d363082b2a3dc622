"""Runners execute a bundle's notebook and return the finished run's output folder.

Every runner (local subprocess, Docker container, the Kaggle emulator's executor) produces the same shape:
``<run-dir>/outputs/`` is the kernel's working directory (``/kaggle/working``) and ``<run-dir>/raw_log/``
holds the console log. Evidence reads only those, plus the run state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOutcome:
    """What a runner reports about one notebook execution."""

    backend: str  # "local" | "docker" | "kaggle"
    exit_code: int  # 0 = the notebook ran to the end
    outputs_dir: Path  # the kernel's working directory after the run
    log_path: Path  # raw console log (plain text for local/docker)
    wall_s: float  # wall time of the execution
    detail: str = ""  # one line: why it failed, which image, …

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
