"""The training → automation contract: the files a training run leaves in its output folder, as JSON Schemas.

Written once, here, and used by both sides:

* the writers build every document through :func:`document` (``run.py`` for ``run_result.json``,
  ``scoring.score`` for ``eval_results.json``, the kernel notebook for ``kernel_run.json``,
  ``scoring.build_prediction`` for the lines of ``predictions.jsonl``): every key of the schema is present
  (null where the run did not get that far) and an unknown key is an error, so a typo cannot silently drop
  evidence;
* automation (``tunix_rt.evidence`` and ``tunix_rt.validate``) checks the documents against the same schemas
  with ``jsonschema``, takes the field lists it copies into the evidence from them, and the evidence schemas
  ``$ref`` the shared blocks (:data:`SCHEMA_URI` + ``#/$defs/…``);
* the test fixtures (``tests/run_fixtures.py``) are produced through the same builders.

This module lives in ``training/`` because the kernel on Kaggle has nothing but the payload's ``training/``
folder; automation imports it as ``tunix_rt.training.contract``. It imports nothing but the standard library.
"""

from __future__ import annotations

import copy
from typing import Any

SCHEMA_VERSION = 1
SCHEMA_URI = "urn:tunix-rt:training:"  # + document name: each schema's $id (automation's $ref target)

OUTPUT_SUBDIR = "output"  # the training outputs, inside the kernel's working directory
RUN_RESULT = "run_result.json"
EVAL_RESULTS = "eval_results.json"
KERNEL_RUN = "kernel_run.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.jsonl"

STATUSES = ("complete", "failed")  # of a whole run (kernel_run.json, and the evidence)
RUN_STATUSES = (*STATUSES, "cut_for_time")  # a training session may also stop before its deadline, to resume
MODES = ("smoke", "full")
STOP_REASONS = ("max_steps", "deadline", "stop_after_steps")  # training/session.py

_STR = {"type": ["string", "null"]}
_COUNT = {"type": ["integer", "null"], "minimum": 0}
_NUMBER = {"type": ["number", "null"]}
_SHA256 = {"anyOf": [{"type": "string", "pattern": "^[0-9a-f]{64}$"}, {"type": "null"}]}
_SCORE = {"type": "number", "minimum": 0, "maximum": 1}


def _object(properties: dict[str, Any], *, nullable: bool = False, description: str = "") -> dict[str, Any]:
    """A closed object: every property required (null allowed per property), nothing else allowed."""
    schema: dict[str, Any] = {
        "type": ["object", "null"] if nullable else "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _nullable_ref(name: str) -> dict[str, Any]:
    return {"anyOf": [{"type": "null"}, {"$ref": f"#/$defs/{name}"}]}


_DEFS: dict[str, Any] = {
    "model": _object({
        "id": {"type": "string", "description": "the model's own id (never a Gemma id for random weights)"},
        "family": _STR,
        "source": {"enum": ["random-init", "safetensors", None]},
        "weights_path": {**_STR, "description": "folder of the loaded *.safetensors (null: random init)"},
        "finetune": {"enum": ["full", "lora", None]},
        "lora_rank": _COUNT,
        "param_count": _COUNT,
        "trainable_param_count": _COUNT,
        "dtype": _STR,
    }),
    "training": _object({
        "steps": _COUNT,
        "max_steps": _COUNT,
        "batch_size": _COUNT,
        "seq_len": _COUNT,
        "first_loss": _NUMBER,
        "final_loss": _NUMBER,
        "loss_drop": {**_NUMBER, "description": "(first - final) / first over the logged losses"},
        "tokens_trained": _COUNT,
        "tokens_per_second": {**_NUMBER, "description": "steps 2..N (step 1 carries the JIT compile)"},
        "step_time_s": _NUMBER,
    }),
    "eval": _object({
        "answer_correctness": {**_SCORE, "description": "normalized exact match of the <answer> (0-1)"},
        "format_compliance": _SCORE,
        "n_items": {"type": "integer", "minimum": 0},
        "n_correct": {"type": "integer", "minimum": 0},
        "n_well_formed": {"type": "integer", "minimum": 0},
    }),
    "by_category": {
        "type": "object",
        "additionalProperties": _object({
            "n": {"type": "integer", "minimum": 0},
            "correct": {"type": "integer", "minimum": 0},
            "well_formed": {"type": "integer", "minimum": 0},
        }),
    },
    "session": _object({
        "start_step": {"type": "integer", "minimum": 0, "description": "0, or the step resumed from"},
        "end_step": {"type": "integer", "minimum": 0},
        "stop_reason": {"enum": list(STOP_REASONS)},
        "deadline_unix": _NUMBER,
        "resumed_from": _object({"path": {"type": "string"}, "step": {"type": "integer", "minimum": 0}},
                                nullable=True),
        "restore_s": _NUMBER,
    }, description="where this training session started and why it stopped (training/session.py)"),
    "timings_s": {
        "type": "object",
        "description": "seconds per phase (see training/run.py); null where the run did not get there",
        "additionalProperties": _NUMBER,
    },
}

_RUN_RESULT = _object({
    "schema_version": {"const": SCHEMA_VERSION},
    "status": {"enum": list(RUN_STATUSES)},
    "error": {**_STR, "description": "one line: why the run failed (null otherwise)"},
    "mode": {"enum": [*MODES, None]},
    "command": {**_STR, "description": "the training command line, as run"},
    "model": _nullable_ref("model"),
    "config": _object({"name": {"type": "string"}, "path": {"type": "string"}, "sha256": _SHA256},
                      nullable=True),
    "dataset": _object({"name": {"type": "string"}, "sha256": _SHA256, "n_traces": _COUNT}, nullable=True),
    "eval_set": _object({"path": {"type": "string"}, "sha256": _SHA256, "n_items": _COUNT}, nullable=True),
    "devices": _object({
        "platform": {"enum": ["cpu", "gpu", "tpu"]},
        "count": {"type": "integer", "minimum": 1},
        "kinds": {"type": "array", "items": {"type": "string"}},
        "mesh": _object({"fsdp": {"type": "integer"}, "tp": {"type": "integer"}}),
    }, nullable=True),
    "versions": {"type": ["object", "null"], "additionalProperties": _STR,
                 "required": ["python"], "description": "python and the training libraries' versions"},
    "training": _nullable_ref("training"),
    "eval": _nullable_ref("eval"),
    "timings_s": _nullable_ref("timings_s"),
    "checkpoint": {"type": ["object", "null"], "description": "full runs: format, path (relative to the "
                                                               "output folder), step, config_fingerprint"},
    "session": _nullable_ref("session"),
}, description="What one training run really did, written by train_jax.py whatever the outcome.")

_EVAL_RESULTS = _object({
    "answer_correctness": _SCORE,
    "format_compliance": _SCORE,
    "n_items": {"type": "integer", "minimum": 0},
    "n_correct": {"type": "integer", "minimum": 0},
    "n_well_formed": {"type": "integer", "minimum": 0},
    "by_category": {"$ref": "#/$defs/by_category"},
    "eval_set": {**_STR, "description": "the eval set's file name"},
    "eval_set_sha256": _SHA256,
}, description="Scores of the predictions against the eval set (training and training/rescore.py).")

_KERNEL_RUN = _object({
    "run_version": {"type": "string"},
    "mode": {"enum": list(MODES)},
    "config": {"type": "string", "description": "relative to the payload's training/ folder"},
    "dataset": {"type": "string"},
    "eval_set": {"type": "string", "description": "relative to the payload's training/ folder"},
    "kaggle_kernel_run_type": {**_STR, "description": "$KAGGLE_KERNEL_RUN_TYPE (Batch for pushed runs)"},
    "status": {"enum": list(RUN_STATUSES), "description": "failed until the notebook's last cell"},
    "python_version": {"type": "string"},
    "session_timeout_s": {**_NUMBER, "description": "the Kaggle session timeout the push asked for"},
    "jax_devices": {"type": ["object", "null"], "description": "what a JAX probe in Setup saw: backend, count, "
                                                              "kinds, jax (the version)"},
    "resumed_from": {**_STR, "description": "the attached previous session, relative to /kaggle/input"},
    "cells_completed": {"type": "array", "items": {"type": "string"}},
}, description="The kernel notebook's own record: its parameters and which cells completed.")

_PREDICTION = _object({
    "id": {"type": "string"},
    "prompt": {"type": "string"},
    "raw_output": _STR,
    "parsed_answer": _STR,
    "well_formed": {"type": "boolean"},
    "expected_answer": {"type": "string"},
    "correct": {"type": "boolean"},
    "category": _STR,
}, description="One line of predictions.jsonl.")

_DOCUMENTS: dict[str, dict[str, Any]] = {
    "run_result": _RUN_RESULT,
    "eval_results": _EVAL_RESULTS,
    "kernel_run": _KERNEL_RUN,
    "prediction": _PREDICTION,
}
# document name → the file it is written to (a prediction is one line of predictions.jsonl)
FILES = {"run_result": RUN_RESULT, "eval_results": EVAL_RESULTS, "kernel_run": KERNEL_RUN,
         "prediction": PREDICTIONS}


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of document ``name`` (a fresh copy, with the shared ``$defs``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_URI}{name}",
        **copy.deepcopy(_DOCUMENTS[name]),
        "$defs": copy.deepcopy(_DEFS),
    }


def names() -> tuple[str, ...]:
    """The documents the contract defines."""
    return tuple(_DOCUMENTS)


def fields(name: str, block: str | None = None) -> tuple[str, ...]:
    """The keys of document ``name``, or of its shared block ``block`` (e.g. ``fields("run_result",
    "training")``), in schema order."""
    spec = _DEFS[block] if block else _DOCUMENTS[name]
    return tuple(spec["properties"])


def document(name: str, **values: Any) -> dict[str, Any]:
    """Document ``name`` with every key of its schema: ``values`` where given, else null (``schema_version``
    filled in). An unknown key raises ``KeyError`` (a typo would otherwise drop evidence silently)."""
    keys = fields(name)
    unknown = set(values) - set(keys)
    if unknown:
        raise KeyError(f"{name}: unknown field(s) {sorted(unknown)} (the contract: training/contract.py)")
    doc = dict.fromkeys(keys)
    if "schema_version" in doc:
        doc["schema_version"] = SCHEMA_VERSION
    doc.update(values)
    return doc


def block(block_name: str, **values: Any) -> dict[str, Any]:
    """A shared block (``model``, ``training``, ``eval``) with every key present, as :func:`document`."""
    keys = fields("", block_name)
    unknown = set(values) - set(keys)
    if unknown:
        raise KeyError(f"{block_name}: unknown field(s) {sorted(unknown)} (the contract: training/contract.py)")
    return {**dict.fromkeys(keys), **values}


def run_result(**values: Any) -> dict[str, Any]:
    """``run_result.json``; ``status`` defaults to ``failed`` until the run says otherwise."""
    return document("run_result", **{"status": "failed", **values})
