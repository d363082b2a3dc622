"""Parse `<reasoning>…</reasoning><answer>…</answer>` outputs and score them against an eval set.

* **format compliance**: exactly one non-empty reasoning block, then exactly one answer block, and nothing
  but whitespace around them (a trailing `<end_of_turn>`/`<eos>` stop marker is tolerated: it ends the turn).
* **answer correctness**: the answer block's content, normalized, equals the normalized expected answer.
  An output without exactly one complete answer block, or a missing prediction, counts as wrong.

The predictions lines and ``eval_results.json`` are built through training/contract.py.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from . import contract
from .evalset import EvalSetError, load_eval_set, read_text_file
from .evalset import eval_set_sha256 as file_sha256
from .render import ANSWER_CLOSE, ANSWER_OPEN, END_OF_TURN, EOS, REASONING_CLOSE, REASONING_OPEN

__all__ = ["EvalSetError", "Parsed", "PredictionsError", "build_prediction", "load_eval_set", "normalize_answer",
           "parse_output", "read_predictions", "score", "score_against_file"]

_ANSWER_RE = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.S)
_WELL_FORMED_RE = re.compile(
    r"\s*" + re.escape(REASONING_OPEN) + r"(.*?)" + re.escape(REASONING_CLOSE)
    + r"\s*" + re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE) + r"\s*",
    re.S,
)
_TRAILING_STOP_RE = re.compile(r"(?:\s*(?:" + re.escape(END_OF_TURN) + "|" + re.escape(EOS) + r"))+\s*$")
# 1000, 1,000, -3.50, +7, .5 ; thousands separators only in groups of three.
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")
_TAGS = (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


class Parsed(NamedTuple):
    """What was read from one model output."""

    reasoning: str | None  # content of the reasoning block (when there is exactly one)
    answer: str | None  # content of the answer block (when there is exactly one), else None
    well_formed: bool


def parse_output(text: str | None) -> Parsed:
    """Split a model output into reasoning and answer and decide whether it is in the required format."""
    if not text:
        return Parsed(None, None, False)
    body = _TRAILING_STOP_RE.sub("", text)
    counts = {tag: body.count(tag) for tag in _TAGS}
    answers = _ANSWER_RE.findall(body)
    answer = answers[0].strip() if len(answers) == 1 and counts[ANSWER_OPEN] == 1 else None
    reasoning = None
    if counts[REASONING_OPEN] == 1 and counts[REASONING_CLOSE] == 1:
        start = body.index(REASONING_OPEN) + len(REASONING_OPEN)
        end = body.find(REASONING_CLOSE, start)
        reasoning = body[start:end].strip() if end >= 0 else None
    match = _WELL_FORMED_RE.fullmatch(body)
    well_formed = bool(
        match
        and all(n == 1 for n in counts.values())
        and match.group(1).strip()
        and answer is not None
    )
    return Parsed(reasoning, answer, well_formed)


def _normalize_number(text: str) -> str | None:
    if not any(ch.isdigit() for ch in text) or not _NUMBER_RE.fullmatch(text):
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if value == 0:
        return "0"  # also folds -0 and 0.00
    return format(value.normalize(), "f")


def normalize_answer(text: str | None) -> str:
    """Canonical form for comparison: NFC, trimmed, lowercased, inner whitespace collapsed, one pair of
    surrounding quotes and a trailing period dropped, and numbers written canonically (42.0 -> 42,
    1,000 -> 1000, -3.50 -> -3.5)."""
    if text is None:
        return ""
    out = " ".join(unicodedata.normalize("NFC", text).split()).lower()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "'\"":
        out = out[1:-1].strip()
    if len(out) > 1 and out.endswith("."):
        out = out[:-1].rstrip()
    number = _normalize_number(out)
    return number if number is not None else out


def answers_match(answer: str | None, expected: str) -> bool:
    """True when a parsed answer equals the expected answer after normalization."""
    return answer is not None and normalize_answer(answer) == normalize_answer(expected)


def build_prediction(item: Mapping[str, Any], raw_output: str | None) -> dict[str, Any]:
    """One `predictions.jsonl` line for an eval item and the model's raw output."""
    parsed = parse_output(raw_output)
    return contract.document(
        "prediction",
        id=item["id"],
        prompt=item["prompt"],
        raw_output=raw_output,
        parsed_answer=parsed.answer,
        well_formed=parsed.well_formed,
        expected_answer=item["expected_answer"],
        correct=answers_match(parsed.answer, item["expected_answer"]),
        category=item.get("category"),
    )


def score(
    predictions: Sequence[Mapping[str, Any]],
    eval_items: Sequence[Mapping[str, Any]],
    *,
    eval_set: str | None = None,
    eval_set_sha256: str | None = None,
) -> dict[str, Any]:
    """Score predictions (matched to items by id, re-parsed from `raw_output`) into the eval_results shape.

    Every eval item counts: one with no prediction, or whose output has no single answer block, is wrong
    and not well-formed. Predictions for ids not in the eval set are ignored.
    """
    by_id = {str(p.get("id")): p for p in predictions if isinstance(p, Mapping)}
    n_correct = n_well_formed = 0
    by_category: dict[str, dict[str, int]] = {}
    for item in eval_items:
        pred = by_id.get(str(item["id"]))
        raw = pred.get("raw_output") if pred is not None else None
        parsed = parse_output(raw if isinstance(raw, str) else None)
        correct = answers_match(parsed.answer, item["expected_answer"])
        cat = by_category.setdefault(str(item.get("category", "uncategorized")), {"n": 0, "correct": 0,
                                                                                  "well_formed": 0})
        cat["n"] += 1
        cat["correct"] += int(correct)
        cat["well_formed"] += int(parsed.well_formed)
        n_correct += int(correct)
        n_well_formed += int(parsed.well_formed)
    n_items = len(eval_items)
    return contract.document(
        "eval_results",
        answer_correctness=n_correct / n_items if n_items else 0.0,
        format_compliance=n_well_formed / n_items if n_items else 0.0,
        n_items=n_items,
        n_correct=n_correct,
        n_well_formed=n_well_formed,
        by_category=dict(sorted(by_category.items())),
        eval_set=eval_set,
        eval_set_sha256=eval_set_sha256,
    )


def score_against_file(predictions: Sequence[Mapping[str, Any]], eval_set_path: str | Path) -> dict[str, Any]:
    """:func:`score` against an eval set file, recording its file name and sha256 (what the trainer and the
    score CLI both write as `eval_results.json`)."""
    path = Path(eval_set_path)
    items = load_eval_set(path)
    return score(predictions, items, eval_set=path.name, eval_set_sha256=file_sha256(path))


class PredictionsError(ValueError):
    """A missing or malformed predictions file (the message is one line naming the file and line)."""


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a predictions JSONL file (one object per non-empty line)."""
    path = Path(path)
    text = read_text_file(path, "predictions file", PredictionsError)
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"predictions file {path} line {lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:  # nested deeper than the parser goes: a kernel may have written anything
            raise PredictionsError(f"predictions file {path} line {lineno}: nested too deeply") from None
        if not isinstance(rec, dict):
            raise PredictionsError(f"predictions file {path} line {lineno}: expected a JSON object")
        out.append(rec)
    return out
