"""Small file helpers: atomic writes and hashing (nothing half-written is ever left behind)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

# training/ ships inside the kernel without tunix_rt, so the one atomic writer lives there and is shared here.
from .training.report import atomic_output, write_atomic  # noqa: F401  (re-exported)
from .training.report import canonical_json as dumps_json


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as canonical JSON."""
    return write_atomic(path, dumps_json(obj))


def dig(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]…`` of parsed JSON, or None where a step is missing or not an object (hostile files:
    a notebook that is a list, ``"metadata": null``, a cell that is a number)."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON file that should hold an object, or None when it cannot be read, does not parse (deep nesting
    included) or holds something else: for files a kernel or a user may have written anything into."""
    try:
        data = read_json(path)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file (UTF-8)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a plain file of its own (a symlink, not a regular file, more than one hard link)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({type(exc).__name__})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link, not a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links (it may be another file's content); copy it into place"
    return None
