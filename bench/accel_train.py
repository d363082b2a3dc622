"""One case of the accelerator bench (a mode × a sequence length), trained with the project's own code.

The model is Gemma 3 1B as Tunix defines it (``ModelConfig.gemma3_1b_it()``, named by the submission config's
``model.preset``; ``--tiny``: sft_tiny.yaml's model, float32), randomly initialised in bfloat16 by
``training.model.build_model``; LoRA adapters come from ``training.model.apply_lora`` with the submission
config's ``lora`` section (rank 16); training is ``training.sft.run_sft`` (Tunix ``PeftTrainer``, AdamW with
the submission config's ``training`` section) on batches made by ``training.batches``. No weights are read.

The data are uniformly random token ids with every position in the loss (no padding), so a step trains exactly
batch × sequence length tokens. Runs in a worker process of ``bench/accelerator.py``: one process per case
keeps the device's peak-memory counter and any out-of-memory failure to that case.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accel_batch import Try, first_guess, search
from accel_device import memory_stats

from training import batches as batches_lib
from training import config as config_lib
from training import model as model_lib
from training import sft
from training.session import StopRule

REPO = Path(__file__).resolve().parent.parent
SUBMISSION_CONFIG = REPO / "training" / "configs" / "submission_gemma3_1b.yaml"
TINY_CONFIG = REPO / "training" / "configs" / "sft_tiny.yaml"
TINY_VOCAB = REPO / "training" / "tokenizer" / "tokenizer.json"
PAD_ID = 0  # random tokens are drawn from 1..vocab-1, so no position counts as padding


@dataclass(frozen=True)
class Case:
    """What one worker trains."""

    mode: str  # "full" | "lora"
    seq_len: int
    steps: int
    tiny: bool
    start_batch: int  # 0 = estimate from the device's memory
    max_batch: int
    deadline: float | None  # time.time() after which no larger try starts
    seed: int = 0
    profile_dir: Path | None = None  # capture one step with jax.profiler into this folder
    frozen_reference: bool = False  # LoRA only: time a forward+backward of the frozen model too
    hlo_dump_dir: Path | None = None  # where XLA dumps the optimized HLO (set with profile_dir)


@dataclass(frozen=True)
class Sections:
    """The config sections the case trains with."""

    model: config_lib.ModelSection
    lora: config_lib.LoraSection
    training: config_lib.TrainingSection
    source: str  # where the model's shape comes from, for the result


def sections(tiny: bool, steps: int) -> Sections:
    """Model, LoRA and optimiser sections: the submission config's, with a random-init bf16 Gemma 3 1B; or,
    ``tiny``, sft_tiny.yaml's model as that config has it (float32: the CPU has no native bf16)."""
    submission = config_lib.load_config(SUBMISSION_CONFIG).config
    training = dataclasses.replace(submission.training, max_steps=steps, log_every=1)
    if tiny:
        model = config_lib.load_config(TINY_CONFIG).config.model
        source = f"{TINY_CONFIG.relative_to(REPO)} model.architecture"
    else:
        model = dataclasses.replace(submission.model, id="tunix-rt/gemma3-1b-random", source="random-init",
                                    tokenizer="shipped", weights_glob=None, kaggle_model_source=None)
        source = f"tunix.models.gemma3.model.ModelConfig.{model.preset}() (Tunix's own Gemma 3 1B config)"
        model = dataclasses.replace(model, dtype="bfloat16")
    return Sections(model=model, lora=submission.lora, training=training, source=source)


def _tiny_vocab_size() -> int:
    """The shipped tokenizer's length (sft_tiny.yaml's num_embed: null), read without importing transformers."""
    data = json.loads(TINY_VOCAB.read_text(encoding="utf-8"))
    ids = set(data["model"]["vocab"].values()) | {t["id"] for t in data.get("added_tokens", [])}
    return max(ids) + 1


def random_data(vocab: int, rows: int, seq_len: int, seed: int) -> batches_lib.TokenizedData:
    """``rows`` sequences of uniform random token ids in [1, vocab), every position in the loss."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, size=(rows, seq_len), dtype=np.int32)
    return batches_lib.TokenizedData(tokens=tokens, mask=np.ones_like(tokens), lengths=np.full(rows, seq_len,
                                     dtype=np.int32), pad_id=PAD_ID)


class CompileClock:
    """Seconds JAX spent tracing, lowering and compiling (its own ``/jax/core/compile/*`` duration events).

    Tunix's metrics logger clears every JAX event listener when a trainer closes, so ``arm`` re-registers
    this one before each training run."""

    def __init__(self) -> None:
        self.total = 0.0

    def arm(self) -> None:
        from jax import monitoring

        with contextlib.suppress(Exception):  # not registered (cleared, or never armed)
            monitoring.unregister_event_duration_listener(self._on_event)
        monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name: str, duration: float, **_: Any) -> None:
        if name.startswith("/jax/core/compile/"):
            self.total += duration


def is_oom(exc: BaseException) -> bool:
    """An XLA out-of-memory failure (RESOURCE_EXHAUSTED), as opposed to any other error."""
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def bytes_per_token_guess(cfg: Any, seq_len: int) -> float:
    """A rough first guess of the activation bytes one token keeps for the backward pass (no remat, bf16):
    per layer ~16·d + 4·ffw + 3·H·L values (projections, MLP, attention scores), plus the vocabulary-wide
    logits and log-softmax (~6 bytes per vocabulary entry). Only seeds the search; measurement corrects it."""
    per_layer = 16 * cfg.embed_dim + 4 * cfg.hidden_dim + 3 * cfg.num_heads * seq_len
    return 2.0 * cfg.num_layers * per_layer + 6.0 * cfg.num_embed


class Worker:
    """Builds and trains the case's model at given batch sizes, keeping what each try measured."""

    def __init__(self, case: Case) -> None:
        import jax

        from training.devices import make_mesh

        self.case = case
        self.sections = sections(case.tiny, case.steps)
        self.mesh, self.devices = make_mesh(config_lib.MeshSection(), "auto")
        vocab = _tiny_vocab_size() if case.tiny else 1
        self.spec = model_lib.model_spec(self.sections.model, vocab)
        self.vocab = self.spec.tunix_config.num_embed
        self.device = jax.devices()[0]
        self.compile = CompileClock()
        self.tmp = Path(tempfile.mkdtemp(prefix="tunix-rt-accel-"))

    def build(self) -> Any:
        model = model_lib.build_model(self.spec, self.mesh, None, self.case.seed)
        if self.case.mode == "lora":
            model = model_lib.apply_lora(model, self.sections.lora, self.mesh, self.devices.fsdp, self.case.seed)
        return model

    def train(self, batch: int, steps: int, wrap: Any = None) -> tuple[sft.TrainStats, Any, dict[str, Any]]:
        """Build a fresh model and train ``steps`` steps at ``batch`` rows with ``training.sft.run_sft``."""
        model = self.build()
        total, trainable = model_lib.param_counts(model, self.case.mode == "lora")
        before = memory_stats(self.device)
        data = random_data(self.vocab, batch * steps, self.case.seq_len, self.case.seed)
        order = batches_lib.batch_order(data.count, batch, steps, self.case.seed)
        inputs = batches_lib.training_inputs(data, order)
        if wrap is not None:
            inputs = wrap(inputs, model)
        section = dataclasses.replace(self.sections.training, max_steps=steps, batch_size=batch)
        self.compile.arm()
        compiled = self.compile.total
        stats, trainer = sft.run_sft(model, self.mesh, inputs, batches_lib.step_tokens(data, order), section,
                                     StopRule(max_steps=steps), self.tmp / "metrics.jsonl",
                                     batches_lib.model_inputs_fn(PAD_ID))
        info = {"params_total": total, "params_trainable": trainable, "compile_s": self.compile.total - compiled,
                "base_bytes": before.get("bytes_in_use") if before else None,
                "elapsed_s": _step_clock(self.tmp / "metrics.jsonl")}
        return stats, trainer, info

    def try_batch(self, batch: int) -> Try:
        """One attempt of the case's fixed step count; an out-of-memory failure is a result, not an error."""
        t0 = time.time()
        print(f"accelerator: {self.case.mode} seq {self.case.seq_len}: trying batch {batch}", flush=True)
        oom = False
        try:
            stats, trainer, info = self.train(batch, self.case.steps)
        except Exception as exc:
            if not is_oom(exc):
                raise
            oom = True  # handled below, once the traceback (and the arrays its frames hold) is gone
        if oom:
            gc.collect()
            print(f"accelerator: batch {batch} ran out of device memory", flush=True)
            return Try(batch=batch, oom=True, wall_s=time.time() - t0)
        del trainer
        gc.collect()
        after = memory_stats(self.device)
        elapsed = info["elapsed_s"]
        # Steady state = steps 3..N: step 1 carries the compile, step 2 the first calls of everything else (the
        # learning-rate schedule's small host-side programs compile then, buffers are first allocated).
        warm = elapsed[1:] if len(elapsed) > 2 else elapsed
        step_s = (warm[-1] - warm[0]) / (len(warm) - 1) if len(warm) > 1 else None
        figures = {
            "batch_size": batch,
            "steps": stats.steps,
            "tokens_per_step": batch * self.case.seq_len,
            "tokens_per_second": batch * self.case.seq_len / step_s if step_s else None,
            "step_time_s": step_s,
            "step_time_s_run_sft": stats.step_time_s,
            "first_step_s": elapsed[0] if elapsed else stats.first_step_s,
            "first_loss": stats.first_loss,
            "last_loss": stats.final_loss,
            "params_total": info["params_total"],
            "params_trainable": info["params_trainable"],
        }
        return Try(batch=batch, oom=False, wall_s=time.time() - t0, compile_s=info["compile_s"],
                   peak_bytes=after.get("peak_bytes_in_use") if after else None, base_bytes=info["base_bytes"],
                   figures=figures)

    def start_batch(self) -> int:
        stats = memory_stats(self.device)
        limit = stats.get("bytes_limit") if stats else None
        if not limit:  # CPU: no device memory to fill, so no search: the cap is the batch
            return self.case.max_batch
        if self.case.start_batch:
            return self.case.start_batch
        # Parameters (bf16) plus, for full fine-tuning, AdamW's two moments and the gradients (same dtype).
        params = sum(x.size for x in _param_leaves(self.spec)) * 2
        base = params * (4 if self.case.mode == "full" else 1)
        return first_guess(limit, base, bytes_per_token_guess(self.spec.tunix_config, self.case.seq_len),
                           self.case.seq_len, self.devices.fsdp, self.case.max_batch)


def _step_clock(metrics_path: Path) -> list[float]:
    """Seconds since training began at which each step's loss was ready, from run_sft's metrics.jsonl.

    Steps 3..N of these give the steady step time. (``TrainStats.step_time_s`` spans steps 2..N and also the
    trainer's teardown after the last step: in a 10-step run both weigh on the mean.)"""
    rows = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["elapsed_s"] for row in sorted(rows, key=lambda r: r["step"])]


def _param_leaves(spec: Any) -> list[Any]:
    """Abstract parameter shapes of the model (no memory allocated)."""
    import jax
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3

    abstract = nnx.eval_shape(lambda: gemma3.Gemma3(spec.tunix_config, rngs=nnx.Rngs(0)))
    return jax.tree.leaves(nnx.state(abstract, nnx.Param))


def frozen_fwd_bwd(worker: Worker, batch: int, repeats: int) -> dict[str, Any]:
    """Median time of a forward + backward pass of the frozen model (no adapters, no optimizer) at ``batch``.

    The backward is the gradient with respect to the embedding table, with Tunix's own SFT loss: it runs the
    activation gradient back through every layer, as a LoRA step must, plus the tied table's own weight
    gradient (≈ 6 % of the model's FLOPs at 1B). The LoRA goal is step time ≤ 1.5 × this.
    """
    import statistics

    import jax
    from flax import nnx
    from tunix.sft import peft_trainer

    case = worker.case
    model = model_lib.build_model(worker.spec, worker.mesh, None, case.seed)
    data = random_data(worker.vocab, batch, case.seq_len, case.seed)
    x = next(batches_lib.training_inputs(data, batches_lib.batch_order(batch, batch, 1, case.seed)))
    gen = batches_lib.model_inputs_fn(PAD_ID)
    # Tunix's PeftTrainer loss (a private name: the bench must time exactly what the trainer differentiates).
    loss_fn = peft_trainer._default_loss_fn
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.PathContains("embedder")))

    @nnx.jit
    def step(m: Any, tokens: Any, mask: Any) -> Any:
        return grad_fn(m, **gen(peft_trainer.TrainingInput(input_tokens=tokens, input_mask=mask)))

    with jax.set_mesh(worker.mesh):
        t0 = time.perf_counter()
        jax.block_until_ready(step(model, x.input_tokens, x.input_mask))
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(step(model, x.input_tokens, x.input_mask))
            times.append(time.perf_counter() - t0)
    return {"batch_size": batch, "repeats": repeats, "first_call_s": first,
            "step_time_s": statistics.median(times),
            "what": "forward + backward of the frozen model (gradient w.r.t. the embedding table), Tunix SFT loss"}


def run_case(case: Case, emit: Any = None) -> dict[str, Any]:
    """Tune the batch, keep the largest try that fit; then the optional frozen reference and profile.

    ``emit(result)`` is called with the result so far after each phase, so a worker stopped at the budget
    still leaves its measured figures behind."""
    emit = emit or (lambda _: None)
    worker = Worker(case)
    cfg = worker.spec.tunix_config
    result: dict[str, Any] = {
        "mode": case.mode,
        "seq_len": case.seq_len,
        "model": {"source": worker.sections.source, "num_layers": cfg.num_layers, "embed_dim": cfg.embed_dim,
                  "hidden_dim": cfg.hidden_dim, "num_heads": cfg.num_heads, "head_dim": cfg.head_dim,
                  "num_kv_heads": cfg.num_kv_heads, "vocab": cfg.num_embed, "dtype": worker.sections.model.dtype,
                  "lora_rank": worker.sections.lora.rank if case.mode == "lora" else None},
        "mesh": {"fsdp": worker.devices.fsdp, "tp": worker.devices.tp},
    }
    stats = memory_stats(worker.device)
    limit = stats.get("bytes_limit") if stats else None
    best, tries = search(worker.try_batch, worker.start_batch(), multiple=worker.devices.fsdp,
                         max_batch=case.max_batch, limit_bytes=limit, deadline=case.deadline)
    result["memory_limit_bytes"] = limit
    result["tries"] = [{"batch": t.batch, "oom": t.oom, "wall_s": round(t.wall_s, 3),
                        "compile_s": round(t.compile_s, 3), "peak_bytes": t.peak_bytes} for t in tries]
    if best is None:
        result.update(status="oom", error=f"batch {tries[-1].batch} does not fit in device memory")
        return result
    result.update(best.figures)
    result["status"] = "ok"
    result["compile_s"] = best.compile_s
    result["peak_memory_bytes"], result["peak_memory_source"] = _peak_memory(best)
    emit(result)
    if case.frozen_reference and case.mode == "lora":
        result["frozen_fwd_bwd"] = frozen_fwd_bwd(worker, best.batch, repeats=max(3, case.steps // 2))
        emit(result)
    if case.profile_dir is not None:
        from accel_profile import profile_case

        result["profile"] = profile_case(worker, best.batch, case.profile_dir)
    return result


def _peak_memory(best: Try) -> tuple[int, str]:
    if best.peak_bytes is not None:
        return best.peak_bytes, ("device allocator peak_bytes_in_use after the try (tries run in growing batch "
                                 "order, so it is this try's own peak)")
    import resource

    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "process max RSS (the CPU backend's device memory is host memory; includes the Python process)")
