"""Output files of a training run: atomic JSON/JSONL writes, library versions, run_result.json.

training/ also runs from an unpacked copy on Kaggle where tunix_rt is not installed, so it carries its own
small atomic writer instead of importing tunix_rt.fsutil (same canonical JSON: indent 2, sorted keys).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# run_result.versions key → distribution name
_DISTRIBUTIONS = {
    "jax": "jax",
    "jaxlib": "jaxlib",
    "flax": "flax",
    "optax": "optax",
    "tunix": "google-tunix",
    "transformers": "transformers",
    "qwix": "qwix",
}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temp file in the same folder and a rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Canonical JSON (indent 2, sorted keys, UTF-8, trailing newline), atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, atomically."""
    write_atomic(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


def versions() -> dict[str, str | None]:
    """Python and training-library versions installed in this process's environment."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def round_or_none(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def run_result(**fields: Any) -> dict[str, Any]:
    """The run_result.json document: every key of the contract present (null when not reached)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "failed",
        "error": None,
        "mode": None,
        "command": None,
        "model": None,
        "config": None,
        "dataset": None,
        "eval_set": None,
        "devices": None,
        "versions": None,
        "training": None,
        "eval": None,
        "timings_s": None,
        "checkpoint": None,
        "session": None,
    }
    unknown = set(fields) - set(doc)
    if unknown:  # a typo here would silently drop evidence
        raise KeyError(f"run_result: unknown field(s) {sorted(unknown)}")
    doc.update(fields)
    return doc
