"""Builders of plausible run directories, following the output contract in the brief (COMMON.md).

``write_finished_run`` lays out what a runner leaves behind (run_state.json, outputs/output/*, raw_log/);
``write_project`` makes a minimal checkout (kernel notebook, training scripts, configs, dataset manifest,
eval set) for packaging tests. Plain functions, so any test module can import them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

TINY_MODEL = "tunix-rt/gemma3-tiny"
GEMMA_MODEL = "google/gemma-3-1b-it"
CONFIG_PATH = "training/configs/sft_tiny.yaml"
EVAL_SET_PATH = "training/evalsets/eval_v1.jsonl"
DATASET = "dev-reasoning-v2"

CONFIG_TEXT = "name: sft_tiny\nmodel:\n  id: tunix-rt/gemma3-tiny\ntraining:\n  max_steps: 4\n"
EVAL_SET_TEXT = "".join(
    json.dumps(
        {
            "id": f"eval-{i:03d}",
            "prompt": f"What is {i} + {i}?",
            "expected_answer": str(2 * i),
            "category": "arithmetic",
        }
    )
    + "\n"
    for i in range(1, 5)
)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def kaggle_log_text(records: list[dict[str, Any]]) -> str:
    """Kaggle's log format: a JSON array written one object per line with leading commas."""
    if not records:
        return "[]"
    return "[" + "\n,".join(json.dumps(r) for r in records) + "]"


def write_finished_run(
    run_dir: Path,
    *,
    platform: str = "local",
    model_id: str = TINY_MODEL,
    param_count: int = 1_234_567,
    status: str = "complete",
    n_items: int = 4,
    n_correct: int = 3,
    raw_log: str | None = None,
    raw_log_name: str = "console.log",
    kaggle: dict[str, Any] | None = None,
    with_outputs: bool = True,
    with_eval: bool = True,
) -> Path:
    """Write a run directory as a runner leaves it after the kernel finished; returns ``run_dir``."""
    run_dir = Path(run_dir)
    out = run_dir / "outputs" / "output"
    out.mkdir(parents=True, exist_ok=True)
    (run_dir / "raw_log").mkdir(parents=True, exist_ok=True)
    if raw_log is None:
        raw_log = (
            "Input Notebook: bundle/kaggle_submission.ipynb\nstep 1 loss 5.10\nstep 4 loss 4.20\n"
            "✅ Smoke run completed successfully!\n"
        )
    (run_dir / "raw_log" / raw_log_name).write_text(raw_log, encoding="utf-8")
    state: dict[str, Any] = {
        "schema_version": 1,
        "run_version": run_dir.name,
        "mode": "smoke",
        "platform": platform,
        "accelerator": "cpu",
        "command": "tunix-rt rehearse --backend local --mode smoke",
        "bundle": {
            "sha256": "ab" * 32,
            "metadata_sha256": "cd" * 32,
            "size_bytes": 123456,
            "config_path": CONFIG_PATH,
            "dataset": DATASET,
            "eval_set": EVAL_SET_PATH,
            "mode": "smoke",
        },
        "raw_log": f"raw_log/{raw_log_name}",
        "stages": {},
    }
    if kaggle is not None:
        state["kaggle"] = kaggle
    _write_json(run_dir / "run_state.json", state)
    if not with_outputs:
        return run_dir
    score = n_correct / n_items
    _write_json(
        out / "run_result.json",
        {
            "schema_version": 1,
            "status": status,
            "error": None if status == "complete" else "training step raised",
            "mode": "smoke",
            "command": "python -m tunix_rt.training.train_jax --config sft_tiny.yaml --output ./output",
            "model": {
                "id": model_id,
                "family": "gemma3",
                "source": "random-init",
                "weights_path": None,
                "finetune": "full",
                "lora_rank": None,
                "param_count": param_count,
                "trainable_param_count": param_count,
                "dtype": "float32",
            },
            "config": {"name": "sft_tiny", "path": CONFIG_PATH, "sha256": _sha(CONFIG_TEXT)},
            "dataset": {"name": DATASET, "sha256": "ef" * 32, "n_traces": 550},
            "eval_set": {"path": EVAL_SET_PATH, "sha256": _sha(EVAL_SET_TEXT), "n_items": n_items},
            "devices": {"platform": "cpu", "count": 1, "kinds": ["cpu"], "mesh": {"fsdp": 1, "tp": 1}},
            "versions": {
                "python": "3.11.7",
                "jax": "0.10.2",
                "jaxlib": "0.10.2",
                "flax": "0.12.8",
                "optax": "0.2.8",
                "tunix": "0.1.7",
                "transformers": "5.12.1",
                "qwix": "0.1.0",
            },
            "training": {
                "steps": 4,
                "max_steps": 4,
                "batch_size": 2,
                "seq_len": 64,
                "first_loss": 5.1,
                "final_loss": 4.2,
                "loss_drop": 0.9,
                "tokens_trained": 512,
                "tokens_per_second": 256.0,
                "step_time_s": 0.5,
            },
            "eval": {
                "answer_correctness": score,
                "format_compliance": 1.0,
                "n_items": n_items,
                "n_correct": n_correct,
                "n_well_formed": n_items,
            },
            "timings_s": {
                "import": 1.0,
                "data": 0.1,
                "model_init": 0.2,
                "compile": 3.0,
                "train": 2.0,
                "generate": 1.0,
                "score": 0.01,
                "checkpoint": 0.0,
                "total": 7.31,
            },
            "checkpoint": None,
        },
    )
    _write_json(
        out / "kernel_run.json",
        {
            "run_version": run_dir.name,
            "mode": "smoke",
            "config": CONFIG_PATH,
            "dataset": DATASET,
            "eval_set": EVAL_SET_PATH,
            "kaggle_kernel_run_type": "Batch",
            "status": status,
            "cells_completed": ["setup", "configuration", "build_dataset", "smoke_run"],
            "python_version": "3.11.7",
        },
    )
    if with_eval:
        preds = [
            {
                "id": f"eval-{i:03d}",
                "prompt": "p",
                "raw_output": "<answer>x</answer>",
                "parsed_answer": "x",
                "well_formed": True,
                "expected_answer": "x",
                "correct": i <= n_correct,
                "category": "arithmetic",
            }
            for i in range(1, n_items + 1)
        ]
        (out / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
        _write_json(
            out / "eval_results.json",
            {
                "answer_correctness": score,
                "format_compliance": 1.0,
                "n_items": n_items,
                "n_correct": n_correct,
                "n_well_formed": n_items,
                "by_category": {"arithmetic": {"n": n_items, "correct": n_correct, "well_formed": n_items}},
                "eval_set": EVAL_SET_PATH,
                "eval_set_sha256": _sha(EVAL_SET_TEXT),
            },
        )
    return run_dir


def kaggle_block(status: str = "COMPLETE", failure_message: str | None = None) -> dict[str, Any]:
    """The run state's ``kaggle`` block as the push/wait/pull stages record it."""
    return {
        "kernel_ref": "alice/tunix-rt-m33",
        "url": "https://www.kaggle.com/code/alice/tunix-rt-m33",
        "version_number": 3,
        "machine_shape": "TpuV5E8",
        "accelerator": "tpu-v5e-8",
        "status": status,
        "failure_message": failure_message,
        "pushed_at": "2026-11-20T10:00:00Z",
        "finished_at": "2026-11-20T10:42:13+00:00",
        "session_timeout_s": 32400,
    }


def write_project(root: Path) -> Path:
    """A minimal checkout with everything ``tunix-rt package`` puts in the zip; returns ``root``."""
    files = {
        "pyproject.toml": "[project]\nname = 'tunix-rt'\n",
        "kernel/kaggle_submission.ipynb": json.dumps(
            {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1
        )
        + "\n",
        "training/__init__.py": "",
        "training/train_jax.py": "def main() -> None:\n    print('train')\n",
        "training/eval_generate.py": "def main() -> None:\n    print('eval')\n",
        CONFIG_PATH: CONFIG_TEXT,
        "training/configs/submission_gemma3_1b.yaml": "name: submission_gemma3_1b\n",
        f"training/datasets/{DATASET}/manifest.json": json.dumps(
            {"dataset_key": DATASET, "trace_count": 550}
        ),
        f"training/datasets/{DATASET}/dataset.jsonl": '{"prompt": "not packaged"}\n',
        EVAL_SET_PATH: EVAL_SET_TEXT,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


HOSTILE_PROMPT = ('<script>alert("x")</script><img src="http://127.0.0.1:9/evil.png"> & "quotes" — '
                  "What is 1 + 1?")
FIXED_MTIME = 1_790_000_000  # outputs' mtime: the evidence timestamp (and so every byte) stays the same


def eval_items(n_items: int) -> list[dict[str, Any]]:
    """Eval items whose first prompt is hostile HTML (a report must show it as text, never load it)."""
    items = []
    for i in range(1, n_items + 1):
        prompt = HOSTILE_PROMPT if i == 1 else f"Sam has {i} apples and buys {i} more. How many apples now?"
        items.append({"id": f"eval-{i:03d}", "prompt": prompt, "expected_answer": str(2 * i),
                      "category": "arithmetic" if i % 2 else "word_problem", "difficulty": "easy"})
    return items


def write_trained_run(
    run_dir: Path,
    *,
    steps: int = 40,
    log_every: int = 5,
    n_items: int = 6,
    n_correct: int = 4,
    eval_every: int | None = None,
    kaggle: dict[str, Any] | None = None,
    platform: str = "local",
    fill: bool = True,
) -> Path:
    """A finished run whose outputs come from the trainer's own writers: ``metrics.jsonl`` through
    :class:`MetricLog` (the console line's record), ``predictions.jsonl``/``eval_results.json`` through
    ``scoring``, ``run_result.json`` through ``report.run_result``; then the evidence through
    :func:`tunix_rt.evidence.fill_evidence` (when ``fill``). The first ``n_correct`` items are answered
    right, one more is malformed. ``eval_every`` adds an ``eval_loss`` row every that many steps."""
    import io
    import math
    import os

    from tunix_rt.training import report as train_report
    from tunix_rt.training import scoring
    from tunix_rt.training.metric_line import MetricLog

    write_finished_run(run_dir, platform=platform, kaggle=kaggle, n_items=n_items, n_correct=n_correct,
                       with_eval=False)
    out = Path(run_dir) / "outputs" / "output"
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
        log = MetricLog(fh, steps, "cpu", console=io.StringIO())
        for step in range(1, steps + 1):
            if step == 1 or step % log_every == 0 or step == steps:
                log.log(step=step, loss=round(0.6 + 5.4 * math.exp(-step / 12), 6), learning_rate=0.003,
                        tokens=200 * step, elapsed_s=2.0 + 0.05 * step)
            if eval_every and step % eval_every == 0:
                fh.write(json.dumps({"step": step, "eval_loss": round(0.9 + 5.0 * math.exp(-step / 14), 6)}) + "\n")
    items = eval_items(n_items)
    outputs = []
    for i in range(1, len(items) + 1):
        if i <= n_correct:
            outputs.append(f"<reasoning>{i} + {i} = {2 * i}</reasoning><answer>{2 * i}</answer>")
        elif i == n_correct + 1:
            outputs.append("I think it is <b>5</b>")
        else:
            outputs.append("<reasoning>a guess</reasoning><answer>7</answer>")
    predictions = [scoring.build_prediction(item, text) for item, text in zip(items, outputs, strict=True)]
    results = scoring.score(predictions, items, eval_set=Path(EVAL_SET_PATH).name,
                            eval_set_sha256=_sha(EVAL_SET_TEXT))
    train_report.write_jsonl(out / "predictions.jsonl", predictions)
    train_report.write_json(out / "eval_results.json", results)
    doc = json.loads((out / "run_result.json").read_text(encoding="utf-8"))
    doc.pop("schema_version")
    doc["training"].update(steps=steps, max_steps=steps, final_loss=round(0.6 + 5.4 * math.exp(-steps / 12), 6),
                           first_loss=round(0.6 + 5.4 * math.exp(-1 / 12), 6))
    doc["eval"] = {k: results[k] for k in ("answer_correctness", "format_compliance", "n_items", "n_correct",
                                           "n_well_formed")}
    doc["eval_set"]["n_items"] = n_items
    train_report.write_json(out / "run_result.json", train_report.run_result(**doc))
    for path in out.iterdir():
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    if fill:
        from tunix_rt.evidence import fill_evidence

        fill_evidence(run_dir)
    return Path(run_dir)
