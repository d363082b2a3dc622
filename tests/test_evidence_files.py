"""The runbook's CI check: every evidence folder committed under submission_runs/ passes `tunix-rt validate`.

Only tracked folders count (``git ls-files``): a rehearsal or a refused run may leave an untracked folder
behind, and that is the user's scratch, not committed evidence. Parametrised over the folders, with the same
validator the CLI and the packager use. Until a run's evidence is committed there is nothing to check, and
the test says so by skipping (it must not pass on an empty list).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tunix_rt import paths
from tunix_rt.evidence import EVIDENCE_FILES
from tunix_rt.validate import validate_run_dir


def tracked_run_dirs() -> list[Path]:
    """The folders under submission_runs/ that hold committed evidence files."""
    root = paths.project_root()
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "submission_runs"], cwd=root, capture_output=True,
                                check=True).stdout.decode("utf-8").split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.fail(f"{root}: not a git checkout; the committed evidence is what git tracks")
    folders = {Path(rel).parent for rel in listed if rel and Path(rel).name in EVIDENCE_FILES}
    return sorted(root / folder for folder in folders)


RUN_DIRS = tracked_run_dirs()


def test_evidence_folders_are_the_tracked_ones() -> None:
    assert all(d.parent == paths.submission_runs_dir() for d in RUN_DIRS), RUN_DIRS


@pytest.mark.parametrize("run_dir", RUN_DIRS or [None], ids=[d.name for d in RUN_DIRS] or ["no-evidence"])
def test_evidence_folder_is_valid(run_dir: Path | None) -> None:
    if run_dir is None:
        pytest.skip(f"no evidence folders under {paths.submission_runs_dir()} yet (commit a run's evidence)")
    problems = [str(p) for p in validate_run_dir(run_dir)]
    assert problems == [], "\n".join(problems)
