"""Files training writes: the one atomic writer of training/ (JSON, JSONL, bytes), and library versions.

Every file training/ writes (run outputs, rebuilt datasets, eval sets, tokenizers, the kernel's
kernel_run.json) goes through :func:`write_atomic`: a temp file in the same folder and a rename, so a crash
never leaves half a file. training/ also runs from an unpacked payload on Kaggle where tunix_rt is not
installed, so it cannot use tunix_rt.fsutil; fsutil takes its atomic writer and canonical JSON (indent 2,
sorted keys) from here instead.
What the documents hold is training/contract.py's business.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Stream into ``path`` atomically: yields a binary file in the same folder, renamed over ``path`` only
    when the block ends without an exception (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text is UTF-8 encoded) through :func:`atomic_output`. Returns ``path``."""
    with atomic_output(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def canonical_json(obj: Any) -> str:
    """The canonical JSON text: indent 2, sorted keys, UTF-8 kept as is, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> Path:
    """Canonical JSON, atomically."""
    return write_atomic(path, canonical_json(obj))


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """One JSON object per line, atomically."""
    return write_atomic(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


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
