"""eval_v1: reproducible, well-shaped, and disjoint from every training dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tunix_rt.training.dataset_registry import KNOWN_DATASETS, load_dataset
from tunix_rt.training.evalset import DEFAULT_EVAL_SET, EvalSetError, load_eval_set, render_evalset

SCRIPT = str(DEFAULT_EVAL_SET.parent.parent / "build_evalset.py")


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return load_eval_set(DEFAULT_EVAL_SET)


def test_eval_set_regenerates_byte_identical() -> None:
    assert render_evalset() == DEFAULT_EVAL_SET.read_bytes()


def test_check_flag(tmp_path: Path) -> None:
    script = SCRIPT
    good = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    changed = tmp_path / "eval.jsonl"
    changed.write_bytes(DEFAULT_EVAL_SET.read_bytes() + b"\n")
    bad = subprocess.run([sys.executable, script, "--check", "--out", str(changed)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_shape_and_composition(items: list[dict]) -> None:
    assert 25 <= len(items) <= 40
    assert [i["id"] for i in items] == [f"eval-{n:03d}" for n in range(1, len(items) + 1)]
    for item in items:
        assert {"id", "prompt", "expected_answer", "category", "difficulty"} <= set(item)
        assert item["difficulty"] in {"easy", "medium", "hard"}
    assert Counter(i["category"] for i in items) == {
        "reasoning": 12, "synthetic": 8, "golden_style": 3, "edge_case": 2}
    train_categories = {r["meta"]["category"] for r in load_dataset().records}
    assert {i["category"] for i in items} <= train_categories


@pytest.mark.parametrize("key", KNOWN_DATASETS)
def test_prompts_unseen_in_training(items: list[dict], key: str) -> None:
    train_prompts = {r["prompt"] for r in load_dataset(key).records}
    overlap = [i["id"] for i in items if i["prompt"] in train_prompts]
    assert overlap == []
    assert len({i["prompt"] for i in items}) == len(items)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError) as info:
        load_eval_set(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    ('{"id": "x"\n', "line 1: not valid JSON"),
    ('[1]\n', "line 1: expected a JSON object"),
    ('{"id": "x", "prompt": "p", "expected_answer": "1", "category": "c"}\n', "'difficulty'"),
    ('{"id": "x", "prompt": "p", "expected_answer": "1", "category": "c", "difficulty": "easy"}\n' * 2,
     "line 2: duplicate id 'x'"),
    ("\n", "has no items"),
])
def test_bad_lines_are_one_line_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError) as info:
        load_eval_set(path)
    assert fragment in str(info.value) and "\n" not in str(info.value) and "e.jsonl" in str(info.value)


def test_items_are_canonical_json_lines() -> None:
    for line in DEFAULT_EVAL_SET.read_text(encoding="utf-8").splitlines():
        assert line == json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True)
