"""Supervised fine-tuning with Tunix's PeftTrainer, logging measured steps into metrics.jsonl and the console."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainingSection
from .metric_line import MetricLog


def learning_rate_schedule(section: TrainingSection, steps: int) -> Any:
    """Linear warmup from 0 to the peak, then cosine/linear decay to ``end_lr_ratio`` × peak (or constant)."""
    import optax

    peak = section.learning_rate
    warmup = int(section.warmup_ratio * steps)
    end = peak * section.end_lr_ratio
    if section.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1), end)
    after = optax.constant_schedule(peak) if section.lr_schedule == "constant" else optax.linear_schedule(
        peak, end, max(steps - warmup, 1))
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(section: TrainingSection, schedule: Any) -> Any:
    """AdamW (decoupled weight decay) after a global-norm clip."""
    import optax

    return optax.chain(
        optax.clip_by_global_norm(section.clip_norm),
        optax.adamw(schedule, b1=section.b1, b2=section.b2, weight_decay=section.weight_decay),
    )


@dataclass
class TrainStats:
    """What the training loop measured."""

    steps: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    tokens_trained: int = 0
    first_step_s: float = 0.0  # wall time until step 1's loss was ready: JIT compile + one step
    train_s: float = 0.0  # whole loop, incl. first_step_s
    losses: list[float] = field(default_factory=list)
    steps_tokens_after_first: int = 0  # tokens of steps 2..N (the steady-state throughput's numerator)

    @property
    def loss_drop(self) -> float | None:
        if self.first_loss is None or self.final_loss is None or self.first_loss == 0:
            return None
        return (self.first_loss - self.final_loss) / self.first_loss

    @property
    def step_time_s(self) -> float | None:
        """Mean wall time of the steps after the first (the compiled steady state)."""
        if self.steps < 2:
            return None
        return (self.train_s - self.first_step_s) / (self.steps - 1)

    @property
    def tokens_per_second(self) -> float | None:
        if self.steps < 2 or self.train_s <= self.first_step_s:
            return None
        return self.steps_tokens_after_first / (self.train_s - self.first_step_s)


def _metrics_hook(stats: TrainStats, schedule: Any, tokens: np.ndarray, log_every: int, last_step: int,
                  metric_log: MetricLog, t0: float) -> Any:
    """A Tunix TrainingHooks that records each step's loss and logs the logged ones (metrics.jsonl + the
    ``TUNIX_RT_METRIC`` console line, one record: training/metric_line.py)."""
    from tunix.sft import hooks

    cumulative = np.cumsum(tokens)

    class MetricsHook(hooks.TrainingHooks):
        def on_train_start(self, train_ctx: Any) -> None:
            pass

        def on_train_end(self, train_ctx: Any) -> None:
            pass

        def on_train_step_start(self, train_ctx: Any) -> None:
            pass

        def on_train_step_end(self, train_ctx: Any, train_step: int, train_loss: float) -> None:
            # Tunix calls this one step late with step = 1-based count and that step's (synced) loss.
            elapsed = time.perf_counter() - t0
            loss = float(train_loss)
            if train_step == 1:
                stats.first_step_s = elapsed
                stats.first_loss = loss
            stats.steps = train_step
            stats.final_loss = loss
            stats.losses.append(loss)
            if train_step == 1 or train_step % log_every == 0 or train_step == last_step:
                metric_log.log(step=train_step, loss=loss,
                               learning_rate=float(schedule(train_step - 1)),  # optax counts from 0
                               tokens=int(cumulative[train_step - 1]), elapsed_s=elapsed)

        def on_eval_step_start(self, train_ctx: Any) -> None:
            pass

        def on_eval_step_end(self, train_ctx: Any, eval_loss: float) -> None:
            pass

    return MetricsHook()


def run_sft(model: Any, mesh: Any, batches: Any, step_tokens: np.ndarray, section: TrainingSection,
            steps: int, metrics_path: Path, model_inputs_fn: Any) -> tuple[TrainStats, Any]:
    """Train ``steps`` steps with Tunix's PeftTrainer (only the LoRA params when the model has adapters).

    Returns the measured stats and the trainer (its model and optimizer are what a checkpoint saves)."""
    import jax
    from tunix.sft import peft_trainer

    schedule = learning_rate_schedule(section, steps)
    trainer = peft_trainer.PeftTrainer(
        model,
        make_optimizer(section, schedule),
        peft_trainer.TrainingConfig(eval_every_n_steps=steps + 1, max_steps=steps, pbar_description=None),
    ).with_gen_model_input_fn(model_inputs_fn)
    stats = TrainStats()
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    with metrics_path.open("w", encoding="utf-8") as fh:
        t0 = time.perf_counter()
        metric_log = MetricLog(fh, steps, jax.devices()[0].device_kind)
        hook = _metrics_hook(stats, schedule, step_tokens, section.log_every, steps, metric_log, t0)
        trainer.with_training_hooks(hook)
        with jax.set_mesh(mesh):
            trainer.train(batches)
        stats.train_s = time.perf_counter() - t0
    stats.tokens_trained = int(step_tokens[: stats.steps].sum())
    stats.steps_tokens_after_first = int(step_tokens[1: stats.steps].sum())
    return stats, trainer


def save_checkpoint(trainer: Any, root: Path, step: int, lora: bool) -> dict[str, Any]:
    """Save model params + optimizer state as an Orbax checkpoint (Tunix's layout: <root>/<step>/…)."""
    import orbax.checkpoint as ocp
    from tunix.sft import checkpoint_manager

    manager = checkpoint_manager.CheckpointManager(
        root_directory=str(root), options=ocp.CheckpointManagerOptions(max_to_keep=1)
    )
    manager.save(step, trainer.model, trainer.optimizer, save_only_lora_params=lora, force=True)
    manager.close()  # waits for the (async) write to finish
    return {"format": "orbax", "path": str(root), "step": step}
