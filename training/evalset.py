"""Eval sets: JSONL files of `{"id","prompt","expected_answer","category","difficulty"}` items."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

EVALSETS_DIR = Path(__file__).resolve().parent / "evalsets"
DEFAULT_EVAL_SET = EVALSETS_DIR / "eval_v1.jsonl"
REQUIRED_FIELDS = ("id", "prompt", "expected_answer", "category", "difficulty")


class EvalSetError(ValueError):
    """A missing or malformed eval set file (the message is one line naming the file and line)."""


def load_eval_set(path: str | os.PathLike[str] = DEFAULT_EVAL_SET) -> list[dict[str, Any]]:
    """Read and validate an eval set: every line a JSON object with the required string fields, ids unique."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalSetError(f"eval set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"eval set {path} cannot be read: {exc}") from None
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"eval set {path} line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise EvalSetError(f"eval set {path} line {lineno}: expected a JSON object")
        for key in REQUIRED_FIELDS:
            if not isinstance(item.get(key), str) or not item[key]:
                raise EvalSetError(f"eval set {path} line {lineno}: field {key!r} must be a non-empty string")
        if item["id"] in seen:
            raise EvalSetError(f"eval set {path} line {lineno}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        items.append(item)
    if not items:
        raise EvalSetError(f"eval set {path} has no items")
    return items


def eval_set_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of the eval set file's bytes (recorded next to the scores)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
