"""One training run, end to end: check inputs → data → model → Tunix SFT → checkpoint → greedy eval → files.

Called by ``training/train_jax.py`` (the thin entry script). Exit codes: 0 done (status "complete", or
"cut_for_time": the session stopped before its deadline with a checkpoint to resume, no eval); 2 bad input
(flags, config, dataset key, eval file, model files, a checkpoint that cannot be resumed), one line on stderr
and nothing written; 1 a failure during the run, recorded in ``run_result.json`` (status "failed" + error).
Every number written is measured in this run.

Sessions (Kaggle stops a session at its timeout): ``--deadline_unix T`` makes a full run checkpoint and stop
``checkpoint.deadline_margin_s`` (plus one step) before T; ``--resume_from DIR`` continues the latest complete
checkpoint under DIR (a previous run's --output, or its checkpoint/ folder) on the same schedule: same batch
order (batch k is fixed by the seed), same learning-rate position (the restored optimizer step). Chained
sessions give the loss curve of one long run. ``--stop_after_steps N`` cuts a session after N steps as a
deadline would (deterministic, for tests and rehearsals).

What the figures mean:
- metrics.jsonl: step 1, every ``training.log_every``-th step and the last; each row is also printed to
  stdout as a ``TUNIX_RT_METRIC {json}`` line for live viewers (fields: training/metric_line.py). ``loss`` =
  that step's masked NLL over the completion tokens, ``learning_rate`` = the schedule's value used at that
  step, ``tokens`` = cumulative real (non-pad) tokens processed through that step, ``elapsed_s`` = seconds
  since training began.
- run_result.json ``training``: ``loss_drop`` = (first - final) / first over those logged losses;
  ``step_time_s`` and ``tokens_per_second`` cover steps 2..N (step 1 carries the JIT compile).
- ``timings_s``: import (JAX/Flax/Tunix), data (mesh, tokenizer, tokenization), model_init, compile (until
  step 1's loss was ready), train (the rest of the loop), checkpoint, generate, score, total (from start-up).
- ``checkpoint.path`` is relative to --output (full runs only: Tunix's Orbax layout <step>/model_params …;
  with LoRA only the adapters are saved); ``checkpoint.step`` is the newest complete step saved.
- ``session``: ``start_step`` (0, or the step resumed from), ``end_step``, ``stop_reason`` ("max_steps",
  "deadline" or "stop_after_steps"), ``deadline_unix``, ``resumed_from`` ({path, step} or null),
  ``restore_s``. A resumed session's metrics.jsonl, losses and throughput cover its own steps only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import contract
from .batches import DataFitError
from .checkpoints import CHECKPOINT_DIR, Fingerprint, ResumeError, ResumePoint, config_fingerprint
from .config import ConfigError, LoadedConfig, TrainConfig, load_config
from .contract import run_result
from .dataset_registry import Dataset, DatasetError, load_dataset
from .devices import DEVICE_CHOICES, DeviceError, make_mesh, select_platform
from .evalset import EvalSetError, eval_set_sha256, load_eval_set
from .model import ModelSourceError, find_weights_dir
from .report import round_or_none, versions, write_json, write_jsonl
from .tokenizer import TokenizerError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATUS_COMPLETE, STATUS_CUT = "complete", "cut_for_time"  # run_result.json "status" besides "failed"
TRAINING_DIR = Path(__file__).resolve().parent
PROG = "train_jax"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_jax.py",
        description="Fine-tune a Gemma 3 model with Tunix on a reasoning dataset, predict greedily on an "
                    "eval set and score it. Writes metrics.jsonl, predictions.jsonl, eval_results.json and "
                    "run_result.json into --output.",
    )
    p.add_argument("--config", required=True, metavar="PATH", help="training config YAML")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the run's output files")
    p.add_argument("--dataset", metavar="KEY", help="dataset key (default: the config's data.dataset)")
    p.add_argument("--eval_set", metavar="PATH", help="eval set JSONL (default: the config's data.eval_set)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="accelerator JAX must use (default: auto = what JAX finds)")
    p.add_argument("--smoke_steps", type=int, metavar="N",
                   help="smoke mode: train N steps, skip the checkpoint")
    p.add_argument("--max_steps", type=int, metavar="N", help="full mode: override training.max_steps")
    p.add_argument("--seed", type=int, metavar="N", help="override training.seed")
    p.add_argument("--model_dir", metavar="DIR",
                   help="folder of HF *.safetensors + tokenizer (overrides model.weights_glob)")
    p.add_argument("--input_dir", metavar="DIR",
                   default=os.environ.get("TUNIX_RT_INPUT_DIR", "/kaggle/input"),
                   help="where model.weights_glob is searched ($TUNIX_RT_INPUT_DIR, else /kaggle/input)")
    p.add_argument("--resume_from", metavar="DIR",
                   help="full mode: continue the latest complete checkpoint under DIR (a previous run's --output "
                        "or its checkpoint/ folder), made with the same config")
    p.add_argument("--deadline_unix", type=float, metavar="T",
                   help="full mode: Unix time by which the run must have ended; it checkpoints and stops "
                        "checkpoint.deadline_margin_s before (status cut_for_time, exit 0)")
    p.add_argument("--stop_after_steps", type=int, metavar="N",
                   help="full mode: end this session after N steps as if its deadline had come (tests)")
    return p


@dataclass
class Inputs:
    """Everything validated before the first file is written."""

    loaded: LoadedConfig
    cfg: TrainConfig
    dataset: Dataset
    eval_path: Path
    eval_items: list[dict[str, Any]]
    weights_dir: Path | None
    mode: str  # "smoke" | "full"
    steps: int
    fingerprint: Fingerprint  # of the config as run: what a checkpoint must match to be resumed
    resume: ResumePoint | None = None  # found in prepare() (needs Orbax)


def _display_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def check_inputs(args: argparse.Namespace) -> Inputs:
    """Validate flags, config, dataset, eval set and model files (cheap; no JAX). Raises a one-line error."""
    for flag in ("smoke_steps", "max_steps", "stop_after_steps"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ConfigError(f"--{flag}: expected a positive number of steps, got {value}")
    if args.smoke_steps is not None and args.max_steps is not None:
        raise ConfigError("--smoke_steps and --max_steps are exclusive (smoke or full mode)")
    loaded = load_config(args.config)
    cfg = loaded.config
    data = replace(cfg.data, dataset=args.dataset or cfg.data.dataset)
    training = replace(cfg.training,
                       max_steps=args.max_steps or cfg.training.max_steps,
                       seed=cfg.training.seed if args.seed is None else args.seed)
    cfg = replace(cfg, data=data, training=training)
    dataset = load_dataset(cfg.data.dataset)
    if args.eval_set:
        eval_path = Path(args.eval_set)
    else:
        eval_path = Path(cfg.data.eval_set)
        eval_path = eval_path if eval_path.is_absolute() else TRAINING_DIR / eval_path
    eval_items = load_eval_set(eval_path)
    weights_dir = find_weights_dir(cfg.model, args.model_dir, args.input_dir)
    mode = "smoke" if args.smoke_steps is not None else "full"
    steps = args.smoke_steps if mode == "smoke" else cfg.training.max_steps
    _check_session_flags(args, cfg, mode)
    return Inputs(loaded, cfg, dataset, eval_path, eval_items, weights_dir, mode, steps,
                  config_fingerprint(cfg, dataset.sha256))


def _check_session_flags(args: argparse.Namespace, cfg: TrainConfig, mode: str) -> None:
    """Sessions need full mode and checkpoints; --output must not already hold another run's checkpoints."""
    session_flags = [f"--{f}" for f in ("resume_from", "deadline_unix", "stop_after_steps")
                     if getattr(args, f) is not None]
    if session_flags and mode != "full":
        raise ConfigError(f"{session_flags[0]} needs a full run (drop --smoke_steps)")
    if session_flags and not cfg.checkpoint.enabled:
        raise ConfigError(f"{session_flags[0]} needs checkpoint.enabled: true (a session resumes from one)")
    existing = Path(args.output) / CHECKPOINT_DIR
    if mode == "full" and cfg.checkpoint.enabled and existing.is_dir() and any(existing.iterdir()):
        # Resuming in place (--resume_from = --output) continues those checkpoints; anything else would mix two
        # runs' checkpoints in one folder.
        in_place = args.resume_from is not None and (
            Path(args.resume_from).resolve() in (Path(args.output).resolve(), existing.resolve()))
        if not in_place:
            raise ConfigError(f"--output {args.output} already holds checkpoints ({existing}); continue them "
                              f"with --resume_from {args.output}, or choose an empty folder")


class Run:
    """State of one run, so a failure at any phase still reports what was measured up to it."""

    def __init__(self, args: argparse.Namespace, inputs: Inputs, t_start: float) -> None:
        self.args, self.inputs, self.t_start = args, inputs, t_start
        self.output = Path(args.output).resolve()  # Orbax needs an absolute checkpoint path
        self.timings: dict[str, float | None] = dict.fromkeys(
            ("import", "data", "model_init", "compile", "train", "generate", "score", "checkpoint", "total"))
        self.fields: dict[str, Any] = {}

    def _phase(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - t0, 3)
        return now

    def result(self, status: str, error: str | None) -> dict[str, Any]:
        self.timings["total"] = round(time.perf_counter() - self.t_start, 3)
        inp = self.inputs
        return run_result(
            status=status,
            error=error,
            mode=inp.mode,
            command=shlex.join(["python", *sys.argv]),
            config={"name": inp.cfg.name, "path": _display_path(inp.loaded.path),
                    "sha256": inp.loaded.sha256},
            dataset={"name": inp.dataset.name, "sha256": inp.dataset.sha256,
                     "n_traces": inp.dataset.n_traces},
            eval_set={"path": _display_path(inp.eval_path), "sha256": eval_set_sha256(inp.eval_path),
                      "n_items": len(inp.eval_items)},
            versions=versions(),
            timings_s=dict(self.timings),
            **self.fields,
        )

    def prepare(self) -> None:
        """Import the stack, build the mesh, tokenize the data and the model spec. Anything wrong here is bad
        input (device, tokenizer, lengths, preset): the caller exits 2 without writing a file."""
        cfg, inp = self.inputs.cfg, self.inputs
        t = time.perf_counter()
        import jax  # noqa: F401  (timed: the JAX/Flax/Tunix import is a phase of its own)
        import tunix.sft.peft_trainer  # noqa: F401

        from . import batches as batches_lib
        from . import model as model_lib
        from .tokenizer import load_tokenizer

        t = self._phase("import", t)
        self.mesh, dev = make_mesh(cfg.mesh, self.args.device)
        self.fields["devices"] = dev.as_json()
        self.fsdp = dev.fsdp
        if cfg.training.batch_size % dev.fsdp or cfg.generation.batch_size % dev.fsdp:
            raise DeviceError(f"training.batch_size {cfg.training.batch_size} and generation.batch_size "
                              f"{cfg.generation.batch_size} must divide by the fsdp axis ({dev.fsdp})")
        self.tokenizer = load_tokenizer(inp.weights_dir if cfg.model.tokenizer == "model_dir" else None)
        self.data = batches_lib.tokenize_records(inp.dataset.records, self.tokenizer, cfg.data.seq_len)
        self.order = batches_lib.batch_order(self.data.count, cfg.training.batch_size, inp.steps,
                                             cfg.training.seed)
        self.step_tokens = batches_lib.step_tokens(self.data, self.order)
        self.spec = model_lib.model_spec(cfg.model, len(self.tokenizer))
        if self.args.resume_from is not None:
            from .checkpoints import find_resume_point

            inp.resume = find_resume_point(self.args.resume_from, inp.fingerprint)
        self._phase("data", t)

    def execute(self) -> str:
        """Model, training (with its checkpoints), generation, scoring; fills self.fields/self.timings as it
        goes. Returns the status: "complete", or "cut_for_time" (no generation: the schedule goes on)."""
        cfg, inp = self.inputs.cfg, self.inputs
        from . import batches as batches_lib
        from . import model as model_lib
        from . import predict, sft
        from .checkpoints import saved_steps
        from .scoring import build_prediction, score
        from .session import REASON_MAX_STEPS, StopRule

        mesh, tokenizer, data, spec = self.mesh, self.tokenizer, self.data, self.spec
        t = time.perf_counter()
        model = model_lib.build_model(spec, mesh, inp.weights_dir, cfg.training.seed)
        if cfg.lora.enabled:
            model = model_lib.apply_lora(model, cfg.lora, mesh, self.fsdp, cfg.training.seed)
        total, trainable = model_lib.param_counts(model, cfg.lora.enabled)
        self.fields["model"] = {
            "id": cfg.model.id,
            "family": cfg.model.family,
            "source": cfg.model.source,
            "weights_path": str(inp.weights_dir) if inp.weights_dir else None,
            "finetune": "lora" if cfg.lora.enabled else "full",
            "lora_rank": cfg.lora.rank if cfg.lora.enabled else None,
            "param_count": total,
            "trainable_param_count": trainable,
            "dtype": cfg.model.dtype,
        }
        t = self._phase("model_init", t)

        rule = StopRule(max_steps=inp.steps, deadline_unix=self.args.deadline_unix,
                        margin_s=cfg.checkpoint.deadline_margin_s, stop_after_steps=self.args.stop_after_steps)
        self.rule = rule
        plan = self._checkpoint_plan()
        stats, trainer = sft.run_sft(
            model, mesh, batches_lib.training_inputs(data, self.order), self.step_tokens, cfg.training,
            rule, self.output / contract.METRICS, batches_lib.model_inputs_fn(data.pad_id), plan)
        self.timings["compile"] = round(stats.first_step_s, 3)  # JIT compile + the first step
        self.timings["train"] = round(stats.train_s - stats.first_step_s - stats.checkpoint_s, 3)
        self.fields["training"] = {
            "steps": stats.steps,
            "max_steps": inp.steps,
            "batch_size": cfg.training.batch_size,
            "seq_len": cfg.data.seq_len,
            "first_loss": round_or_none(stats.first_loss),
            "final_loss": round_or_none(stats.final_loss),
            "loss_drop": round_or_none(stats.loss_drop),
            "tokens_trained": stats.tokens_trained,
            "tokens_per_second": round_or_none(stats.tokens_per_second, 1),
            "step_time_s": round_or_none(stats.step_time_s, 5),
        }
        resumed = inp.resume
        self.fields["session"] = {
            "start_step": stats.start_step,
            "end_step": stats.steps,
            "stop_reason": rule.reason or REASON_MAX_STEPS,
            "deadline_unix": self.args.deadline_unix,
            "resumed_from": {"path": resumed.given, "step": resumed.step} if resumed else None,
            "restore_s": round_or_none(stats.restore_s, 3),
        }
        if plan is not None:
            self.timings["checkpoint"] = round(stats.checkpoint_s, 3)
            steps_saved = saved_steps(plan.root)
            self.fields["checkpoint"] = {
                "format": "orbax",
                "path": CHECKPOINT_DIR,  # relative to --output
                "step": steps_saved[-1] if steps_saved else None,
                "config_fingerprint": inp.fingerprint.digest,
            }
            if not steps_saved or steps_saved[-1] != stats.steps:
                raise RuntimeError(f"no complete checkpoint of step {stats.steps} in {CHECKPOINT_DIR}/ "
                                   f"(saved: {steps_saved})")
        if rule.cut_for_time:
            return STATUS_CUT  # the next session resumes from the checkpoint; eval comes after the last one
        if stats.steps != inp.steps:
            raise RuntimeError(f"training stopped after {stats.steps} of {inp.steps} steps")
        t = time.perf_counter()

        raw = predict.generate(trainer.model, tokenizer, spec.tunix_config, mesh,
                               [item["prompt"] for item in inp.eval_items], cfg.generation)
        t = self._phase("generate", t)

        predictions = [build_prediction(item, text) for item, text in zip(inp.eval_items, raw, strict=True)]
        results = score(predictions, inp.eval_items, eval_set=inp.eval_path.name,
                        eval_set_sha256=eval_set_sha256(inp.eval_path))
        write_jsonl(self.output / contract.PREDICTIONS, predictions)
        write_json(self.output / contract.EVAL_RESULTS, results)
        keys = ("answer_correctness", "format_compliance", "n_items", "n_correct", "n_well_formed")
        self.fields["eval"] = {k: results[k] for k in keys}
        self._phase("score", t)
        return STATUS_COMPLETE

    def _checkpoint_plan(self) -> Any:
        """Where this run saves (full runs with checkpoint.enabled) and what it resumes from; else None."""
        from .checkpoints import record
        from .sft import CheckpointPlan

        cfg, inp = self.inputs.cfg, self.inputs
        if inp.mode != "full" or not cfg.checkpoint.enabled:
            return None
        resumed = inp.resume
        return CheckpointPlan(
            root=self.output / CHECKPOINT_DIR,
            interval_steps=cfg.checkpoint.interval_steps,
            max_to_keep=cfg.checkpoint.max_to_keep,
            record_fn=lambda step, position: record(inp.fingerprint, step, position, cfg.training.seed),
            resume_root=resumed.root if resumed else None,
            resume_step=resumed.step if resumed else None,
            resume_data_position=resumed.record.get("data_position") if resumed else None,
        )


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, validate inputs (exit 2), run (exit 1 on failure, with run_result.json), exit 0."""
    t_start = time.perf_counter()
    args = build_parser().parse_args(argv)
    select_platform(args.device)  # before anything imports jax
    # transformers serves only tokenizers here; its "PyTorch was not found" advice is noise on stderr.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        inputs = check_inputs(args)
    except (ConfigError, DatasetError, EvalSetError, ModelSourceError) as exc:
        _say(f"error: {' '.join(str(exc).split())}")
        return EXIT_USAGE

    run = Run(args, inputs, t_start)
    output = Path(args.output)
    prepared = False
    try:
        run.prepare()
        prepared = True
        status, error = run.execute(), None
    except (ConfigError, DeviceError, TokenizerError, DataFitError, ResumeError) as exc:
        if not prepared:  # bad input found before anything was written: usage error, no files
            _say(f"error: {' '.join(str(exc).split())}")
            return EXIT_USAGE
        status, error = "failed", " ".join(f"{type(exc).__name__}: {exc}".split())
    except Exception as exc:  # the one boundary: any failure is recorded in run_result.json, exit 1
        status, error = "failed", " ".join(f"{type(exc).__name__}: {exc}".split())
        traceback.print_exc()
    except KeyboardInterrupt:
        status, error = "failed", "interrupted"
    result = run.result(status, error)
    write_json(output / contract.RUN_RESULT, result)
    if status == "failed":
        _say(f"error: {error[:500]}")
        return EXIT_FAILED
    tr, session = result["training"], result["session"]
    where = f"{result['devices']['count']} {result['devices']['platform']} device(s)"
    # a session that resumed a finished schedule, or met its deadline at once, trained no step (no loss)
    loss = "no step trained" if tr["final_loss"] is None else f"loss {tr['first_loss']:.3f} -> {tr['final_loss']:.3f}"
    start = session["start_step"]
    span = "" if tr["final_loss"] is None else f"steps {start + 1}-{tr['steps']}, "
    if status == STATUS_CUT:
        _say(f"cut for time ({session['stop_reason']}) at step {tr['steps']} of {tr['max_steps']} on {where}: "
             f"{span}{loss}, checkpoint {CHECKPOINT_DIR}/{result['checkpoint']['step']}; "
             f"continue with --resume_from {output}")
        return EXIT_OK
    ev = result["eval"]
    resumed = f" (resumed at step {start})" if session["resumed_from"] else ""
    _say(f"{inputs.mode} run of {inputs.cfg.model.id} on {where}: {tr['steps']} steps{resumed}, {loss}, "
         f"format_compliance {ev['format_compliance']:.2f}, answer_correctness {ev['answer_correctness']:.2f}, "
         f"{result['timings_s']['total']:.1f} s -> {output}")
    return EXIT_OK
