"""Output parsing, answer normalization, scoring and the score CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tunix_rt.training import score as score_cli
from tunix_rt.training.evalset import DEFAULT_EVAL_SET, eval_set_sha256, load_eval_set
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


def _write_predictions(path: Path, items: list[dict], n_right: int) -> None:
    lines = []
    for k, item in enumerate(items):
        answer = item["expected_answer"] if k < n_right else "wrong"
        lines.append(json.dumps(build_prediction(item, f"<reasoning>x</reasoning><answer>{answer}</answer>"),
                                ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_score_cli_writes_eval_results(tmp_path: Path) -> None:
    items = load_eval_set(DEFAULT_EVAL_SET)
    preds = tmp_path / "predictions.jsonl"
    _write_predictions(preds, items, n_right=5)
    out = tmp_path / "out" / "eval_results.json"
    proc = subprocess.run([sys.executable, score_cli.__file__, "--predictions", str(preds),
                           "--eval_set", str(DEFAULT_EVAL_SET), "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["n_items"] == len(items) and res["n_correct"] == 5 and res["n_well_formed"] == len(items)
    assert res["answer_correctness"] == pytest.approx(5 / len(items))
    assert res["eval_set"] == "eval_v1.jsonl" and res["eval_set_sha256"] == eval_set_sha256(DEFAULT_EVAL_SET)
    assert set(res) == {"answer_correctness", "format_compliance", "n_items", "n_correct", "n_well_formed",
                        "by_category", "eval_set", "eval_set_sha256"}


@pytest.mark.parametrize("problem", ["missing_predictions", "bad_line", "missing_eval"])
def test_score_cli_bad_input_is_one_line_exit_2(tmp_path: Path, problem: str) -> None:
    preds = tmp_path / "predictions.jsonl"
    eval_set = DEFAULT_EVAL_SET
    if problem == "bad_line":
        preds.write_text('{"id": "eval-001", "raw_output": "x"}\n{not json\n', encoding="utf-8")
    elif problem == "missing_eval":
        preds.write_text("", encoding="utf-8")
        eval_set = tmp_path / "nope.jsonl"
    out = tmp_path / "eval_results.json"
    code = score_cli.main(["--predictions", str(preds), "--eval_set", str(eval_set), "--output", str(out)])
    assert code == 2 and not out.exists()


def test_score_cli_error_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("[1, 2]\n", encoding="utf-8")
    code = score_cli.main(["--predictions", str(preds), "--eval_set", str(DEFAULT_EVAL_SET),
                           "--output", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "p.jsonl line 1" in err
