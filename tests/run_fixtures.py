"""Run directories as a runner leaves them, written through the real writers rather than copied by hand.

``write_finished_run`` lays out ``run_state.json`` (a ``tunix_rt.runstate.RunState``), ``raw_log/`` and the
kernel's ``outputs/output/``: ``run_result.json`` and ``kernel_run.json`` built by training's output contract
(``tunix_rt.training.contract``), ``predictions.jsonl`` and ``eval_results.json`` by the scorer the kernel
runs (``tunix_rt.training.scoring``), all written by training's atomic writer. The eval set is a small one of
its own (:func:`write_eval_set`); the config is the repository's ``sft_tiny.yaml``. With ``bundle`` (a folder
``tunix-rt bundle`` built for a run of the same name, with that eval set) the run gets that bundle, as
packaging needs; without it the run state records a stand-in. ``write_trained_run`` adds a loss curve
(``metrics.jsonl`` through the trainer's ``MetricLog``) and a hostile eval set, for the run report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunix_rt import paths
from tunix_rt.bundle import load_bundle
from tunix_rt.fsutil import sha256_bytes, sha256_file
from tunix_rt.layout import BUNDLE_DIR, OUTPUTS_DIR, RAW_LOG_DIR
from tunix_rt.runstate import BundleRecord, KaggleRecord, RunState
from tunix_rt.training import contract, report
from tunix_rt.training.dataset_registry import canonical_jsonl
from tunix_rt.training.scoring import build_prediction, score

TINY_MODEL = "tunix-rt/gemma3-tiny"
GEMMA_MODEL = "google/gemma-3-1b-it"
DATASET = "dev-reasoning-v2"
CONFIG_PATH = "training/configs/sft_tiny.yaml"  # the repository's, in the payload as in the checkout
EVAL_SET_NAME = "fixture_eval.jsonl"
EVAL_SET_PATH = f"training/evalsets/{EVAL_SET_NAME}"  # where write_eval_set's file sits in a payload


def eval_items(n_items: int = 4) -> list[dict[str, Any]]:
    return [{"id": f"eval-{i:03d}", "prompt": f"What is {i} + {i}?", "expected_answer": str(2 * i),
             "category": "arithmetic", "difficulty": "easy"} for i in range(1, n_items + 1)]


def write_eval_set(folder: Path, n_items: int = 4) -> Path:
    """The fixture eval set as a file named :data:`EVAL_SET_NAME` (bundle it with ``eval_set=``)."""
    return report.write_atomic(Path(folder) / EVAL_SET_NAME, canonical_jsonl(eval_items(n_items)))


def kaggle_log_text(records: list[dict[str, Any]]) -> str:
    """Kaggle's log format: a JSON array written one object per line with leading commas."""
    if not records:
        return "[]"
    return "[" + "\n,".join(json.dumps(r) for r in records) + "]"


def _stand_in_bundle() -> BundleRecord:
    return BundleRecord(sha256="ab" * 32, metadata_sha256="cd" * 32, size_bytes=123456, config_path=CONFIG_PATH,
                        dataset=DATASET, eval_set=EVAL_SET_PATH, mode="smoke")


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
    bundle: Path | None = None,
) -> Path:
    """Write a run directory as a runner leaves it after the kernel finished; returns ``run_dir``."""
    run_dir = Path(run_dir)
    if raw_log is None:
        raw_log = ("Input Notebook: bundle/kaggle_submission.ipynb\nstep 1 loss 5.10\nstep 4 loss 4.20\n"
                   "✅ Smoke run completed successfully!\n")
    report.write_atomic(run_dir / RAW_LOG_DIR / raw_log_name, raw_log)
    (run_dir / OUTPUTS_DIR / contract.OUTPUT_SUBDIR).mkdir(parents=True, exist_ok=True)  # the working dir
    if bundle is not None:
        shutil.copytree(bundle, run_dir / BUNDLE_DIR)
        record = load_bundle(run_dir / BUNDLE_DIR).state_record()
    else:
        record = _stand_in_bundle()
    state = RunState.read(run_dir)
    state.mode, state.platform, state.accelerator = "smoke", platform, "cpu"
    state.command = "tunix-rt rehearse --backend local --mode smoke"
    state.bundle, state.raw_log = record, f"{RAW_LOG_DIR}/{raw_log_name}"
    if kaggle:
        state.kaggle = KaggleRecord.from_dict(kaggle, state.path)
    state.write()
    if with_outputs:
        _write_outputs(run_dir / OUTPUTS_DIR / contract.OUTPUT_SUBDIR, run_dir.name, model_id=model_id,
                       param_count=param_count, status=status, n_items=n_items, n_correct=n_correct,
                       with_eval=with_eval)
    return run_dir


def _write_outputs(out: Path, run_version: str, *, model_id: str, param_count: int, status: str, n_items: int,
                   n_correct: int, with_eval: bool) -> None:
    items = eval_items(n_items)
    eval_sha = sha256_bytes(canonical_jsonl(items))  # = write_eval_set's file
    predictions = [build_prediction(item, "<reasoning>x</reasoning><answer>"
                                          f"{item['expected_answer'] if k < n_correct else 'wrong'}</answer>")
                   for k, item in enumerate(items)]
    evals = score(predictions, items, eval_set=EVAL_SET_NAME, eval_set_sha256=eval_sha)
    config_sha = sha256_file(paths.training_dir() / "configs" / "sft_tiny.yaml")
    result = contract.run_result(
        status=status,
        error=None if status == "complete" else "RuntimeError: training step raised",
        mode="smoke",
        command=f"python training/train_jax.py --config {CONFIG_PATH} --output output --smoke_steps 4",
        model=contract.block("model", id=model_id, family="gemma3", source="random-init", finetune="full",
                             param_count=param_count, trainable_param_count=param_count, dtype="float32"),
        config={"name": "sft_tiny", "path": CONFIG_PATH, "sha256": config_sha},
        dataset={"name": DATASET, "sha256": "ef" * 32, "n_traces": 550},
        eval_set={"path": EVAL_SET_PATH, "sha256": eval_sha, "n_items": n_items},
        devices={"platform": "cpu", "count": 1, "kinds": ["cpu"], "mesh": {"fsdp": 1, "tp": 1}},
        versions={"python": "3.11.7", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8",
                  "tunix": "0.1.7", "transformers": "5.12.1", "qwix": "0.1.0"},
        training=contract.block("training", steps=4, max_steps=4, batch_size=2, seq_len=64, first_loss=5.1,
                                final_loss=4.2, loss_drop=0.176471, tokens_trained=512, tokens_per_second=256.0,
                                step_time_s=0.5),
        eval={key: evals[key] for key in contract.fields("", "eval")},
        timings_s={"import": 1.0, "data": 0.1, "model_init": 0.2, "compile": 3.0, "train": 2.0, "generate": 1.0,
                   "score": 0.01, "checkpoint": None, "total": 7.31},
    )
    report.write_json(out / contract.RUN_RESULT, result)
    report.write_json(out / contract.KERNEL_RUN, contract.document(
        "kernel_run", run_version=run_version, mode="smoke", config="configs/sft_tiny.yaml", dataset=DATASET,
        eval_set=f"evalsets/{EVAL_SET_NAME}", kaggle_kernel_run_type="Batch", status=status,
        python_version="3.11.7", cells_completed=["1 Setup", "2 Configuration", "3 Build Dataset", "4a Smoke Run"]))
    if with_eval:
        report.write_jsonl(out / contract.PREDICTIONS, predictions)
        report.write_json(out / contract.EVAL_RESULTS, evals)


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


HOSTILE_PROMPT = ('<script>alert("x")</script><img src="http://127.0.0.1:9/evil.png"> & "quotes" — '
                  "What is 1 + 1?")
FIXED_MTIME = 1_790_000_000  # outputs' mtime: the evidence timestamp (and so every byte) stays the same


def report_eval_items(n_items: int) -> list[dict[str, Any]]:
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
    ``scoring``, ``run_result.json`` through the training contract; then the evidence through
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
    items = report_eval_items(n_items)
    outputs = []
    for i in range(1, len(items) + 1):
        if i <= n_correct:
            outputs.append(f"<reasoning>{i} + {i} = {2 * i}</reasoning><answer>{2 * i}</answer>")
        elif i == n_correct + 1:
            outputs.append("I think it is <b>5</b>")
        else:
            outputs.append("<reasoning>a guess</reasoning><answer>7</answer>")
    predictions = [scoring.build_prediction(item, text) for item, text in zip(items, outputs, strict=True)]
    results = scoring.score(predictions, items, eval_set=EVAL_SET_NAME,
                            eval_set_sha256=sha256_bytes(canonical_jsonl(items)))
    train_report.write_jsonl(out / "predictions.jsonl", predictions)
    train_report.write_json(out / "eval_results.json", results)
    doc = json.loads((out / "run_result.json").read_text(encoding="utf-8"))
    doc.pop("schema_version")
    doc["training"].update(steps=steps, max_steps=steps, final_loss=round(0.6 + 5.4 * math.exp(-steps / 12), 6),
                           first_loss=round(0.6 + 5.4 * math.exp(-1 / 12), 6))
    doc["eval"] = {k: results[k] for k in ("answer_correctness", "format_compliance", "n_items", "n_correct",
                                           "n_well_formed")}
    doc["eval_set"]["n_items"] = n_items
    train_report.write_json(out / "run_result.json", contract.run_result(**doc))
    for path in out.iterdir():
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    if fill:
        from tunix_rt.evidence import fill_evidence

        fill_evidence(run_dir)
    return Path(run_dir)


def with_evidence_and_report(run_dir: Path, root: Path) -> Path:
    """Fill a finished run's evidence (``root``: the folder made portable) and draw its run report: a run
    `package` accepts."""
    from tunix_rt.evidence import fill_evidence
    from tunix_rt.run_report import write_report

    fill_evidence(run_dir, root=root)
    write_report(run_dir)
    return run_dir


def edit_json(path: Path, **fields: object) -> None:
    """Set top-level fields of a JSON file (to break or change evidence in a test)."""
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))
