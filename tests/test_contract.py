"""training/contract.py: valid JSON Schemas, builders that fill every key and refuse unknown ones, and the
writers (scoring, the fixtures built through them) producing documents that follow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from run_fixtures import write_finished_run
from tunix_rt.training import contract
from tunix_rt.training.scoring import build_prediction, score


@pytest.mark.parametrize("name", contract.names())
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = contract.schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"{contract.SCHEMA_URI}{name}"
    assert schema["required"] == list(contract.fields(name))  # every key present, null when not reached


def test_builders_fill_every_key_and_refuse_typos() -> None:
    doc = contract.run_result(mode="smoke")
    assert set(doc) == set(contract.fields("run_result"))
    assert (doc["schema_version"], doc["status"], doc["mode"], doc["model"]) == (1, "failed", "smoke", None)
    Draft202012Validator(contract.schema("run_result")).validate(doc)
    with pytest.raises(KeyError, match="timing_s"):
        contract.run_result(timing_s={})
    with pytest.raises(KeyError, match="stpes"):
        contract.block("training", stpes=3)


def test_the_scorer_writes_by_the_contract() -> None:
    items = [{"id": "a", "prompt": "p", "expected_answer": "4", "category": "arithmetic"}]
    prediction = build_prediction(items[0], "<reasoning>2+2</reasoning><answer>4</answer>")
    Draft202012Validator(contract.schema("prediction")).validate(prediction)
    Draft202012Validator(contract.schema("eval_results")).validate(score([prediction], items))


def test_a_document_that_breaks_it_is_caught() -> None:
    doc = contract.run_result(status="complete", training=contract.block("training", steps=-1))
    errors = list(Draft202012Validator(contract.schema("run_result")).iter_errors(doc))
    assert errors and any("training" in e.json_path for e in errors)


def test_the_fixtures_are_written_through_it(tmp_path: Path) -> None:
    out = write_finished_run(tmp_path / "m33") / "outputs" / contract.OUTPUT_SUBDIR
    for name in ("run_result", "eval_results", "kernel_run"):
        doc = json.loads((out / contract.FILES[name]).read_text(encoding="utf-8"))
        Draft202012Validator(contract.schema(name)).validate(doc)
