"""Where things live. Paths are resolved from the package, never from the current directory by accident."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent  # automation/ in a checkout, tunix_rt/ when installed

DEFAULT_REHEARSAL_RUN = "m33_rehearsal"
DEFAULT_KAGGLE_RUN = "m33_v1"


def project_root() -> Path:
    """The checkout root (has pyproject.toml and training/); falls back to the current directory
    only for a non-editable install, where no checkout exists."""
    root = _PKG.parent
    if (root / "pyproject.toml").is_file() and (root / "training").is_dir():
        return root
    return Path(os.getcwd()).resolve()


def training_dir() -> Path:
    """The training package folder (training/ in a checkout)."""
    import tunix_rt.training as training_pkg  # light: its __init__ imports nothing heavy

    return Path(training_pkg.__file__).resolve().parent


def kernel_dir() -> Path:
    """The kernel package folder (kernel/ in a checkout)."""
    import tunix_rt.kernel as kernel_pkg

    return Path(kernel_pkg.__file__).resolve().parent


def submission_runs_dir() -> Path:
    return project_root() / "submission_runs"


def default_run_dir(run_version: str) -> Path:
    return submission_runs_dir() / run_version
