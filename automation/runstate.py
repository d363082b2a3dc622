"""The run state file ``<run-dir>/run_state.json``: what each pipeline stage did, so every stage can resume.

Layout of a run directory (``run_version`` is the folder's name)::

    <run-dir>/
      run_state.json        this file (written atomically after every change)
      bundle/               the pushable folder: kernel-metadata.json + kaggle_submission.ipynb
      outputs/              the kernel's working directory after the run (= /kaggle/working)
        output/             training outputs: metrics.jsonl predictions.jsonl eval_results.json run_result.json
      raw_log/              the raw console log: console.log (local/docker) or <slug>.log (Kaggle JSON array)
      run_manifest.json     evidence (committed)
      eval_summary.json     evidence (committed)
      kaggle_output_log.txt evidence (committed)
      report.html, loss.png the run report, drawn from the above at rehearse/pull time (committed)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import EXIT_USAGE, TunixRtError
from .fsutil import write_json_atomic

STATE_FILE = "run_state.json"
STATE_SCHEMA_VERSION = 1

BUNDLE_DIR = "bundle"
OUTPUTS_DIR = "outputs"
TRAIN_OUTPUT_SUBDIR = "output"  # inside outputs/ (the kernel's working dir)
RAW_LOG_DIR = "raw_log"


def state_path(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_FILE


def load(run_dir: Path) -> dict[str, Any]:
    """Load the run state; an absent file gives a fresh state for this run directory."""
    run_dir = Path(run_dir)
    path = state_path(run_dir)
    if not path.exists():
        return new_state(run_dir)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TunixRtError(f"{path}: unreadable run state ({exc}); fix or remove it", EXIT_USAGE) from exc
    if not isinstance(state, dict) or state.get("schema_version") != STATE_SCHEMA_VERSION:
        raise TunixRtError(f"{path}: not a tunix-rt run state (schema_version {STATE_SCHEMA_VERSION})")
    return state


def new_state(run_dir: Path) -> dict[str, Any]:
    return {
        "schema_version": STATE_SCHEMA_VERSION,
        "run_version": Path(run_dir).resolve().name,
        "stages": {},
    }


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Write the state atomically (a crash never leaves a half-written file)."""
    write_json_atomic(state_path(run_dir), state)


def update(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Load, merge top-level ``fields`` (dicts are merged one level deep), save, and return the state."""
    state = load(run_dir)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(state.get(key), dict):
            state[key].update(value)
        else:
            state[key] = value
    save(run_dir, state)
    return state


def mark_stage(run_dir: Path, stage: str, status: str, **info: Any) -> dict[str, Any]:
    """Record a stage's status ("done", "failed", …) plus any details."""
    state = load(run_dir)
    state.setdefault("stages", {})[stage] = {"status": status, **info}
    save(run_dir, state)
    return state


def stage_done(state: dict[str, Any], stage: str) -> bool:
    return state.get("stages", {}).get(stage, {}).get("status") == "done"
