"""Where a pulled output file lands when its name cannot be used as it is: renamed, never a crash.

A kernel's output listing is a flat list of names, and a hostile or careless kernel can list names no folder
can hold together: a file ``f`` and a file ``f/inner`` (``f`` would have to be a file and a folder), ``output``
next to ``output/run_result.json``, or a name with a component longer than a file name may be (NAME_MAX, 255
bytes on Linux). :func:`place` keeps every file: the component in the way becomes ``<name>~<n>`` (the first
free ``n``) and an overlong component is cut to :data:`KEEP_BYTES` bytes plus ``~`` and 8 hex digits of its
sha256. The choice depends only on the names and what is already on disk, so a rerun of the pull puts each
file where the first pull did (and finds it there, verified). The caller warns and records every rename
(the pull stage's ``renamed`` details, the manifest's ``renamed_outputs``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

NAME_MAX = 255  # bytes in one path component (Linux ext4/xfs/tmpfs)
PATH_MAX = 4000  # bytes of a whole path we create (Linux PATH_MAX is 4096, less a margin for temp names)
KEEP_BYTES = 200  # bytes of an overlong component kept before its digest
LONG_NAMES_DIR = "_long_names"  # where a name too long as a whole path goes (its digest as file name)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _shorten(part: str) -> str:
    raw = part.encode("utf-8", errors="surrogatepass")
    if len(raw) <= NAME_MAX:
        return part
    return raw[:KEEP_BYTES].decode("utf-8", errors="ignore") + "~" + _digest(part)[:8]


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _blocks_folder(path: Path) -> bool:
    """``path`` exists and is not a plain folder (a file or a link): nothing can be put under it."""
    return path.is_symlink() or (path.exists() and not path.is_dir())


def _free(parent: Path, part: str, taken: object) -> Path:
    n = 1
    while taken(parent / f"{part}~{n}"):  # type: ignore[operator]
        n += 1
    return parent / f"{part}~{n}"


def place(root: Path, target: Path) -> tuple[Path, str | None]:
    """Where the file meant for ``target`` (under ``root``, already checked to stay inside it) is written, and
    why it moved (None: it did not)."""
    parts = list(target.relative_to(root).parts)
    reasons: list[str] = []
    short = [_shorten(p) for p in parts]
    if short != parts:
        reasons.append(f"a name component is longer than {NAME_MAX} bytes")
    cur = root
    for i, part in enumerate(short):
        cand = cur / part
        if i < len(short) - 1 and _blocks_folder(cand):
            cand = _free(cur, part, _blocks_folder)
            reasons.append(f"{part!r} is already a file, so it cannot be a folder too")
        elif i == len(short) - 1 and (_is_dir(cand) or cand.is_symlink()):
            cand = _free(cur, part, lambda p: p.is_dir() or p.is_symlink())
            reasons.append(f"{part!r} is already a folder")
        cur = cand
    if len(str(cur).encode("utf-8", errors="surrogatepass")) > PATH_MAX:
        cur = root / LONG_NAMES_DIR / _digest("/".join(parts))
        reasons.append(f"the path is longer than {PATH_MAX} bytes")
    return cur, ("; ".join(reasons) if reasons else None)
