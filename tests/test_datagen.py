"""The trace generator and the dataset registry: determinism, composition, record shape."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tunix_rt.training import datagen, dataset_registry
from tunix_rt.training.dataset_registry import (
    DEFAULT_DATASET,
    KNOWN_DATASETS,
    DatasetError,
    canonical_jsonl,
    check_dataset,
    dataset_dir,
    load_dataset,
    write_dataset,
)

V2_DIR = dataset_dir("dev-reasoning-v2")
WORD_PROBLEMS = {"speed_time", "percent_of", "cost_per_item", "add", "subtract", "multiply"}


@pytest.fixture(scope="module")
def x10():
    return load_dataset("dev-reasoning-v2-x10")


def test_committed_files_regenerate_byte_identical(tmp_path: Path) -> None:
    write_dataset("dev-reasoning-v2", tmp_path)
    for name in ("dataset.jsonl", "manifest.json"):
        assert (tmp_path / name).read_bytes() == (V2_DIR / name).read_bytes(), name
    assert check_dataset("dev-reasoning-v2", V2_DIR) is None


def test_check_script_fails_on_a_changed_file(tmp_path: Path) -> None:
    script = Path(dataset_registry.__file__).parent / "build_dataset.py"
    ok = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    good = subprocess.run([sys.executable, str(script), "--check", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    jsonl = tmp_path / "dataset.jsonl"
    jsonl.write_bytes(jsonl.read_bytes().replace(b'"1.0"', b'"1.1"', 1))
    bad = subprocess.run([sys.executable, str(script), "--check", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1 and "dataset.jsonl" in bad.stderr


def test_manifest_describes_the_file() -> None:
    manifest = json.loads((V2_DIR / "manifest.json").read_text(encoding="utf-8"))
    ds = load_dataset("dev-reasoning-v2")
    assert manifest == {
        "key": "dev-reasoning-v2",
        "version": manifest["version"],
        "trace_count": 550,
        "composition": {"reasoning": 385, "synthetic": 110, "golden_style": 35, "edge_case": 20},
        "seed": manifest["seed"],
        "generator": "tunix_rt.training.datagen",
        "sha256": ds.sha256,
    }
    assert ds.sha256 == __import__("hashlib").sha256((V2_DIR / "dataset.jsonl").read_bytes()).hexdigest()


def test_default_dataset_composition_and_shape() -> None:
    ds = load_dataset()
    assert ds.name == DEFAULT_DATASET == "dev-reasoning-v2"
    assert ds.n_traces == len(ds.records) == 550
    assert Counter(r["meta"]["category"] for r in ds.records) == {
        "reasoning": 385, "synthetic": 110, "golden_style": 35, "edge_case": 20}
    assert canonical_jsonl(ds.records) == (V2_DIR / "dataset.jsonl").read_bytes()
    for index, rec in enumerate(ds.records):
        assert set(rec) == {"trace_version", "prompt", "final_answer", "steps", "meta"}
        assert rec["trace_version"] == "1.0"
        assert isinstance(rec["prompt"], str) and rec["prompt"]
        assert isinstance(rec["final_answer"], str) and rec["final_answer"]
        assert rec["steps"] and [s["i"] for s in rec["steps"]] == list(range(len(rec["steps"])))
        assert all(set(s) == {"i", "type", "content"} and s["content"] and s["type"] for s in rec["steps"])
        assert set(rec["meta"]) == {"dataset", "generator", "seed", "category", "task_type", "index"}
        assert rec["meta"]["dataset"] == "dev-reasoning-v2" and rec["meta"]["index"] == index
        assert rec["meta"]["generator"] == "tunix_rt.training.datagen"
    families = {r["meta"]["task_type"] for r in ds.records}
    assert families == {t for tasks in datagen.FAMILIES.values() for t, _ in tasks}
    assert len({r["prompt"] for r in ds.records}) == 550


def test_word_problems_have_three_or_four_steps() -> None:
    records = load_dataset().records
    word = [r for r in records if r["meta"]["category"] == "reasoning"]
    assert {r["meta"]["task_type"] for r in word} == WORD_PROBLEMS
    assert all(3 <= len(r["steps"]) <= 4 for r in word)
    assert {len(r["steps"]) for r in word} == {3, 4}
    # The computed result is in the steps and is the final answer.
    assert all(r["final_answer"] in r["steps"][2]["content"] for r in word)


def test_answers_are_correct_for_checkable_tasks() -> None:
    for rec in load_dataset().records:
        prompt, answer, task = rec["prompt"], rec["final_answer"], rec["meta"]["task_type"]
        quoted = prompt.split("'")[1] if "'" in prompt else None
        if task == "string_reverse":
            assert answer == quoted[::-1]
        elif task == "uppercase":
            assert answer == quoted.upper()
        elif task == "first_letter":
            assert answer == quoted[0]
        elif task == "syllogism":
            assert answer == ("yes" if prompt.startswith("All ") else "no")


def test_x10_is_deterministic_and_ten_times_each_family(x10) -> None:
    again = load_dataset("dev-reasoning-v2-x10")
    assert again.sha256 == x10.sha256 and canonical_jsonl(again.records) == canonical_jsonl(x10.records)
    assert x10.n_traces == 5500
    assert Counter(r["meta"]["category"] for r in x10.records) == {
        "reasoning": 3850, "synthetic": 1100, "golden_style": 350, "edge_case": 200}
    assert len({r["prompt"] for r in x10.records}) == 5500
    assert x10.records[0]["meta"]["seed"] != load_dataset().records[0]["meta"]["seed"]


def test_build_traces_same_seed_same_records_other_seed_differs() -> None:
    comp = {"reasoning": 12, "synthetic": 4, "golden_style": 5, "edge_case": 4}
    a = datagen.build_traces(comp, 3, "t")
    assert a == datagen.build_traces(comp, 3, "t")
    assert a != datagen.build_traces(comp, 4, "t")
    assert len(a) == 25 and Counter(r["meta"]["task_type"] for r in a)["speed_time"] == 2


def test_unknown_dataset_is_a_one_line_error_listing_known_keys() -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("dev-reasoning-v9")
    message = str(info.value)
    assert "\n" not in message and "dev-reasoning-v9" in message
    assert all(key in message for key in KNOWN_DATASETS)
    assert isinstance(info.value, ValueError)


def test_unknown_family_is_rejected() -> None:
    with pytest.raises(ValueError, match="poetry"):
        datagen.build_traces({"poetry": 3}, 0, "t")


def test_tampered_committed_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "dev-reasoning-v2"
    write_dataset("dev-reasoning-v2", folder)
    (folder / "dataset.jsonl").write_bytes((folder / "dataset.jsonl").read_bytes()[:-200])
    monkeypatch.setattr(dataset_registry, "DATASETS_DIR", tmp_path)
    with pytest.raises(DatasetError, match="does not match manifest"):
        load_dataset("dev-reasoning-v2")


# Pinned so a change of generator, seed or Python's random module (3.11 and 3.12 agree) cannot go unnoticed.
X10_SHA256 = "8831a555a39c924df0c4c412175ac2f493f3be587fbb1c4bfde71ce46c4a2a8a"


def test_x10_bytes_are_pinned_and_can_be_written(x10, tmp_path: Path) -> None:
    assert x10.sha256 == X10_SHA256
    write_dataset("dev-reasoning-v2-x10", tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sha256"] == X10_SHA256 and manifest["trace_count"] == 5500
    assert check_dataset("dev-reasoning-v2-x10", tmp_path) is None
