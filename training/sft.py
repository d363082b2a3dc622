"""Supervised fine-tuning with Tunix's PeftTrainer, logging measured steps into metrics.jsonl and the console.

Checkpointing and resuming are Tunix's own (``TrainingConfig.checkpoint_root_directory``: the trainer restores
the latest checkpoint when built, skips the batches already trained and saves through its checkpoint
manager); ``checkpoints.py`` adds the resume record and ``session.py`` decides where a session ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainingSection
from .metric_line import MetricLog
from .session import StopRule, until_stop


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

    steps: int = 0  # the last step taken (absolute: a resumed session starts at start_step + 1)
    start_step: int = 0  # the step this session resumed from (0: a fresh run)
    first_loss: float | None = None
    final_loss: float | None = None
    tokens_trained: int = 0
    first_step_s: float = 0.0  # wall time until the session's first loss was ready: JIT compile + one step
    train_s: float = 0.0  # whole loop, incl. first_step_s
    losses: list[float] = field(default_factory=list)
    steps_tokens_after_first: int = 0  # tokens of the session's steps after its first (steady-state numerator)
    checkpoint_s: float = 0.0  # time spent saving checkpoints (inside train_s)
    restore_s: float | None = None  # time to build the trainer from a checkpoint (None: nothing restored)

    @property
    def session_steps(self) -> int:
        return self.steps - self.start_step

    @property
    def loss_drop(self) -> float | None:
        if self.first_loss is None or self.final_loss is None or self.first_loss == 0:
            return None
        return (self.first_loss - self.final_loss) / self.first_loss

    @property
    def step_time_s(self) -> float | None:
        """Mean wall time of the steps after the first (the compiled steady state)."""
        if self.session_steps < 2:
            return None
        return (self.train_s - self.first_step_s - self.checkpoint_s) / (self.session_steps - 1)

    @property
    def tokens_per_second(self) -> float | None:
        busy = self.train_s - self.first_step_s - self.checkpoint_s
        if self.session_steps < 2 or busy <= 0:
            return None
        return self.steps_tokens_after_first / busy


def _metrics_hook(stats: TrainStats, schedule: Any, tokens: np.ndarray, log_every: int, rule: StopRule,
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
            # Tunix calls this one step late with step = 1-based count and that step's (synced) loss; the
            # session's last step is known by then (the stop rule decides before the next batch is drawn).
            elapsed = time.perf_counter() - t0
            loss = float(train_loss)
            first = train_step == rule.start_step + 1
            if first:
                stats.first_step_s = elapsed
                stats.first_loss = loss
            stats.steps = train_step
            stats.final_loss = loss
            stats.losses.append(loss)
            if first or train_step % log_every == 0 or train_step in (rule.max_steps, rule.stop_step):
                metric_log.log(step=train_step, loss=loss,
                               learning_rate=float(schedule(train_step - 1)),  # optax counts from 0
                               tokens=int(cumulative[train_step - 1]), elapsed_s=elapsed)

        def on_eval_step_start(self, train_ctx: Any) -> None:
            pass

        def on_eval_step_end(self, train_ctx: Any, eval_loss: float) -> None:
            pass

    return MetricsHook()


def _place_optimizer_state(trainer: Any, mesh: Any) -> None:
    """Put the optimizer state on the mesh before the first step, as the steps' outputs will be.

    Tunix does this itself only under the legacy ``with mesh:`` context (it reads pxla.thread_resources),
    which ``jax.set_mesh`` does not set: AdamW's step counts stay uncommitted, step 2 sees them sharded, and the
    train step compiles a second time (measured by bench/accelerator.py)."""
    import jax
    from flax import nnx

    state = nnx.state(trainer.optimizer, nnx.optimizer.OptState)
    nnx.update(trainer.optimizer, jax.device_put(state, nnx.get_named_sharding(state, mesh)))


@dataclass(frozen=True)
class CheckpointPlan:
    """Where a full run saves its checkpoints, how often, and the complete checkpoint it resumes from."""

    root: Path  # <output>/checkpoint (absolute: Orbax refuses relative paths)
    interval_steps: int  # also save every N steps (0: only at the session's end)
    max_to_keep: int
    record_fn: Callable[[int, int], dict[str, Any]]  # (step, data position) → the checkpoint's resume record
    resume_root: Path | None = None  # a validated checkpoint folder to restore from (None: a fresh run)
    resume_step: int | None = None
    resume_data_position: int | None = None


def run_sft(model: Any, mesh: Any, batches: Iterable[Any], step_tokens: np.ndarray, section: TrainingSection,
            rule: StopRule, metrics_path: Path, model_inputs_fn: Any,
            plan: CheckpointPlan | None = None) -> tuple[TrainStats, Any]:
    """Train with Tunix's PeftTrainer (only the LoRA params when the model has adapters) up to
    ``rule.max_steps``, or until ``rule`` ends the session; with a ``plan``, restore and save checkpoints.

    ``batches`` must be the whole deterministic stream from step 1 (Tunix skips those already trained).
    Returns the measured stats and the trainer."""
    import jax
    import orbax.checkpoint as ocp
    from tunix.sft import peft_trainer

    from . import checkpoints

    steps = rule.max_steps
    schedule = learning_rate_schedule(section, steps)
    resuming = plan is not None and plan.resume_root is not None
    stats = TrainStats()
    t_restore = time.perf_counter()
    trainer = peft_trainer.PeftTrainer(
        model,
        make_optimizer(section, schedule),
        peft_trainer.TrainingConfig(
            eval_every_n_steps=steps + 1, max_steps=steps, pbar_description=None,
            # Tunix restores the latest complete checkpoint here when it builds the trainer: params,
            # optimizer state (the schedule's step count) and its step; read-only, as /kaggle/input is.
            checkpoint_root_directory=str(plan.resume_root) if resuming else None,
            checkpointing_options=ocp.CheckpointManagerOptions(read_only=True) if resuming else None,
        ),
    ).with_gen_model_input_fn(model_inputs_fn)
    if resuming:
        stats.restore_s = time.perf_counter() - t_restore
        if (trainer.train_steps, trainer.iter_steps) != (plan.resume_step, plan.resume_data_position):
            raise RuntimeError(f"Tunix restored step {trainer.train_steps} at data position "
                               f"{trainer.iter_steps}; the checkpoint says {plan.resume_step} at "
                               f"{plan.resume_data_position}")
        trainer.checkpoint_manager.close()
    if plan is not None:
        # From here on the trainer saves into this run's own output (the next session's input).
        trainer.checkpoint_manager = checkpoints.session_manager(
            plan.root, interval_steps=plan.interval_steps, max_to_keep=plan.max_to_keep,
            is_last_step=rule.is_last_step, record_fn=lambda step: plan.record_fn(step, trainer.iter_steps))
    _place_optimizer_state(trainer, mesh)
    stats.start_step = stats.steps = trainer.train_steps
    rule.begin(trainer.train_steps)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    with metrics_path.open("w", encoding="utf-8") as fh:
        t0 = time.perf_counter()
        metric_log = MetricLog(fh, steps, jax.devices()[0].device_kind)
        hook = _metrics_hook(stats, schedule, step_tokens, section.log_every, rule, metric_log, t0)
        trainer.with_training_hooks(hook)
        with jax.set_mesh(mesh):
            trainer.train(until_stop(batches, rule))  # its close() saves the last step if not yet saved
        stats.train_s = time.perf_counter() - t0
    stats.checkpoint_s = getattr(trainer.checkpoint_manager, "seconds", 0.0)
    stats.tokens_trained = int(step_tokens[stats.start_step: stats.steps].sum())
    stats.steps_tokens_after_first = int(step_tokens[stats.start_step + 1: stats.steps].sum())
    return stats, trainer
