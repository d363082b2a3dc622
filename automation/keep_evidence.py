"""Nothing lost: a fresh rehearse or run does not overwrite a run directory's complete evidence.

Re-rehearsing into a run directory that holds complete evidence used to overwrite it, and a bad input on the
way left the good evidence gone. The choice made here (issue 14): **refuse without ``--force``** (exit 2,
before anything is written, naming the folder and both ways out: another ``--run-dir``, or ``--force`` to
replace it). ``--force`` is the user saying the old evidence may go; it is then replaced by the new run's.

"Complete evidence": run_manifest.json and eval_summary.json present and the manifest's ``status`` is
``complete``. Failed or half-written evidence is nothing to keep: a rerun may replace it without ``--force``.
A ``run`` that resumes its own pushed version is not a fresh run (its rerun after the end skips every
stage), so :func:`check` is only asked for flows that would start over.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EXIT_USAGE, TunixRtError
from .evidence import MANIFEST_FILE, SUMMARY_FILE
from .fsutil import read_json_object


def complete_evidence(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds complete evidence (see the module docstring)."""
    manifest, summary = Path(run_dir) / MANIFEST_FILE, Path(run_dir) / SUMMARY_FILE
    if not (manifest.is_file() and summary.is_file()):
        return False
    return (read_json_object(manifest) or {}).get("status") == "complete"


def check(run_dir: Path, command: str, *, force: bool) -> None:
    """Exit 2 when ``run_dir`` holds complete evidence and ``force`` is not given."""
    if force or not complete_evidence(run_dir):
        return
    raise TunixRtError(f"{run_dir}: already holds complete evidence ({MANIFEST_FILE}: complete); a new {command} "
                       "would replace it: use another --run-dir, or --force to replace it", EXIT_USAGE)
