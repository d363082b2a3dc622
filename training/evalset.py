"""Eval sets: JSONL files of `{"id","prompt","expected_answer","category","difficulty"}` items, and the
builder of the shipped `evalsets/eval_v1.jsonl` (``training/build_evalset.py`` writes or checks it).

eval_v1 has 25 items like learning.md's eval25: 12 word problems (2 per type), 8 synthetic (2 per type),
3 golden-style, 2 edge cases, drawn from the trace generator with prompts unseen in every training dataset
(a prompt found in a registered dataset, dev-reasoning-v2 or dev-reasoning-v2-x10, is redrawn).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

EVALSETS_DIR = Path(__file__).resolve().parent / "evalsets"
DEFAULT_EVAL_SET = EVALSETS_DIR / "eval_v1.jsonl"
REQUIRED_FIELDS = ("id", "prompt", "expected_answer", "category", "difficulty")

EVAL_SEED = 7001
# (family, task_type, how many); the families' task types come from datagen.FAMILIES
_GOLDEN_AND_EDGE: tuple[tuple[str, str, int], ...] = (
    ("golden_style", "repeat", 1), ("golden_style", "uppercase", 1), ("golden_style", "first_letter", 1),
    ("edge_case", "emoji", 1), ("edge_case", "unicode", 1),
)
_DIFFICULTY = {"reasoning": "medium", "synthetic": "easy", "golden_style": "easy", "edge_case": "hard"}


class EvalSetError(ValueError):
    """A missing or malformed eval set file (the message is one line naming the file and line)."""


def load_eval_set(path: str | os.PathLike[str] = DEFAULT_EVAL_SET) -> list[dict[str, Any]]:
    """Read and validate an eval set: every line a JSON object with the required string fields, ids unique."""
    path = Path(path)
    return parse_eval_set(read_text_file(path, "eval set", EvalSetError), path)


def read_text_file(path: Path, what: str, error: type[ValueError]) -> str:
    """A UTF-8 file's text, or ``error`` with one line naming ``what`` and the file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} cannot be read: {exc}") from None


def parse_eval_set(text: str, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The items of an eval set's ``text`` (``path`` names it in errors), validated as :func:`load_eval_set`
    says; a line nested too deeply for the parser is "not valid JSON" too."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"eval set {path} line {lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise EvalSetError(f"eval set {path} line {lineno}: not valid JSON (nested too deeply)") from None
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


def eval_v1_plan() -> tuple[tuple[str, str, int], ...]:
    """(family, task_type, how many) of eval_v1, in item order."""
    from .datagen import FAMILIES

    return (
        *(("reasoning", task, 2) for task, _ in FAMILIES["reasoning"]),
        *(("synthetic", task, 2) for task, _ in FAMILIES["synthetic"]),
        *_GOLDEN_AND_EDGE,
    )


def training_prompts() -> set[str]:
    """Every prompt of every registered training dataset (the eval set must avoid all of them)."""
    from .dataset_registry import KNOWN_DATASETS, load_dataset

    return {rec["prompt"] for key in KNOWN_DATASETS for rec in load_dataset(key).records}


def build_items() -> list[dict[str, Any]]:
    """The eval_v1 items, in plan order, ids eval-001…"""
    from .datagen import generate_plan

    plan = [(family, task) for family, task, count in eval_v1_plan() for _ in range(count)]
    examples = generate_plan(plan, EVAL_SEED, exclude_prompts=training_prompts())
    items = []
    for n, (family, task_type, prompt, steps, answer) in enumerate(examples, 1):
        difficulty = "medium" if task_type == "arithmetic" else _DIFFICULTY[family]
        if family == "reasoning" and len(steps) == 3:
            difficulty = "easy"
        items.append({"id": f"eval-{n:03d}", "prompt": prompt, "expected_answer": answer, "category": family,
                      "task_type": task_type, "difficulty": difficulty})
    return items


def render_evalset() -> bytes:
    """The exact bytes of eval_v1.jsonl."""
    from .dataset_registry import canonical_jsonl

    return canonical_jsonl(build_items())
