"""The runbook's CI check: every evidence folder committed under submission_runs/ passes `tunix-rt validate`.

Parametrised over the folders, with the same validator the CLI and the packager use. Until a real run's
evidence is committed there is nothing to check, and the test says so by skipping (it must not pass on an
empty list).
"""

from __future__ import annotations

import pytest
from tunix_rt import paths
from tunix_rt.validate import default_run_dirs, validate_run_dir

RUN_DIRS = default_run_dirs()


@pytest.mark.parametrize("run_dir", RUN_DIRS or [None], ids=[d.name for d in RUN_DIRS] or ["no-evidence"])
def test_evidence_folder_is_valid(run_dir) -> None:
    if run_dir is None:
        pytest.skip(f"no evidence folders under {paths.submission_runs_dir()} yet (commit a run's evidence)")
    problems = [str(p) for p in validate_run_dir(run_dir)]
    assert problems == [], "\n".join(problems)
