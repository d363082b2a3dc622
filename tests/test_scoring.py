"""Output parsing, answer normalization and scoring (the rescore CLI: test_commands.py)."""

from __future__ import annotations

import pytest
from tunix_rt.training.scoring import build_prediction, normalize_answer, parse_output, score

GOOD = "<reasoning>2 + 3 = 5.</reasoning><answer>5</answer>"
ITEMS = [
    {"id": "a", "prompt": "p1", "expected_answer": "42", "category": "reasoning", "difficulty": "easy"},
    {"id": "b", "prompt": "p2", "expected_answer": "Yes", "category": "synthetic", "difficulty": "easy"},
    {"id": "c", "prompt": "p3", "expected_answer": "apple, fig", "category": "synthetic",
     "difficulty": "easy"},
    {"id": "d", "prompt": "p4", "expected_answer": "7", "category": "edge_case", "difficulty": "hard"},
]


def _pred(item_id: str, raw: str | None) -> dict:
    return {"id": item_id, "raw_output": raw}


@pytest.mark.parametrize("text", [
    GOOD,
    "  \n" + GOOD + " \n",
    "<reasoning>a\nb</reasoning>\n<answer> 5 </answer>",
    GOOD + "<end_of_turn>",
    GOOD + "<end_of_turn><eos>",
])
def test_well_formed(text: str) -> None:
    parsed = parse_output(text)
    assert parsed.well_formed and parsed.answer == "5" and parsed.reasoning


@pytest.mark.parametrize("text, answer", [
    ("", None),
    (None, None),
    ("the answer is 5", None),  # no tags at all
    ("<reasoning>x</reasoning>", None),  # missing answer block
    ("<answer>5</answer>", "5"),  # missing reasoning block
    ("<reasoning></reasoning><answer>5</answer>", "5"),  # empty reasoning
    ("<reasoning>  \n</reasoning><answer>5</answer>", "5"),  # whitespace-only reasoning
    ("<reasoning>x</reasoning><answer>5</answer><answer>6</answer>", None),  # two answer blocks
    ("<reasoning>x</reasoning><answer>5</answer> and more", "5"),  # text after </answer>
    ("preamble <reasoning>x</reasoning><answer>5</answer>", "5"),  # text before <reasoning>
    ("<answer>5</answer><reasoning>x</reasoning>", "5"),  # wrong order
    ("<reasoning>x<reasoning>y</reasoning><answer>5</answer>", "5"),  # nested/duplicated tag
    ("<reasoning>x</reasoning><answer>5", None),  # answer never closed
    ("<reasoning>xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", None),  # runaway loop, never closed
])
def test_not_well_formed(text: str | None, answer: str | None) -> None:
    parsed = parse_output(text)
    assert not parsed.well_formed
    assert parsed.answer == answer


@pytest.mark.parametrize("a, b", [
    ("42.0", "42"), ("42", "42.000"), ("1,000", "1000"), ("-3.50", "-3.5"), ("+7", "7"), ("0.0", "0"),
    ("-0", "0"), ("  Yes ", "yes"), ("YES", "yes"), ("apple,  fig", "apple, fig"), ("a\n b", "a b"),
    ("yes.", "yes"), ("'abc'", "abc"), ("42.", "42"), ("cafe\u0301", "café"),
])
def test_normalize_equal(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)


@pytest.mark.parametrize("a, b", [
    ("42", "43"), ("4.2", "42"), ("1,00", "100"), ("yes", "no"), ("apple,fig", "apple, fig"), ("-3", "3"),
])
def test_normalize_different(a: str, b: str) -> None:
    assert normalize_answer(a) != normalize_answer(b)


def test_score_counts_every_item_and_treats_missing_as_wrong() -> None:
    preds = [
        _pred("a", "<reasoning>6 * 7 = 42.</reasoning><answer>42.0</answer>"),  # right, well-formed
        _pred("b", "<reasoning>x</reasoning><answer>yes</answer> trailing"),  # right, not well-formed
        _pred("c", "<reasoning>x</reasoning><answer>fig, apple</answer>"),  # wrong, well-formed
        # "d" missing
        _pred("zzz", GOOD),  # not in the eval set: ignored
    ]
    res = score(preds, ITEMS, eval_set="e.jsonl", eval_set_sha256="abc")
    assert res == {
        "answer_correctness": 0.5,
        "format_compliance": 0.5,
        "n_items": 4,
        "n_correct": 2,
        "n_well_formed": 2,
        "by_category": {
            "edge_case": {"n": 1, "correct": 0, "well_formed": 0},
            "reasoning": {"n": 1, "correct": 1, "well_formed": 1},
            "synthetic": {"n": 2, "correct": 1, "well_formed": 1},
        },
        "eval_set": "e.jsonl",
        "eval_set_sha256": "abc",
    }


def test_score_two_answer_blocks_is_wrong_even_if_one_matches() -> None:
    preds = [_pred("a", "<reasoning>x</reasoning><answer>42</answer><answer>42</answer>")]
    res = score(preds, ITEMS[:1])
    assert res["n_correct"] == 0 and res["n_well_formed"] == 0


def test_score_of_nothing_is_zero() -> None:
    res = score([], ITEMS)
    assert res["answer_correctness"] == 0.0 and res["format_compliance"] == 0.0 and res["n_items"] == 4


def test_build_prediction_has_the_predictions_jsonl_fields() -> None:
    line = build_prediction(ITEMS[0], "<reasoning>x</reasoning><answer>42</answer>")
    assert line == {"id": "a", "prompt": "p1", "raw_output": "<reasoning>x</reasoning><answer>42</answer>",
                    "parsed_answer": "42", "well_formed": True, "expected_answer": "42", "correct": True,
                    "category": "reasoning"}
