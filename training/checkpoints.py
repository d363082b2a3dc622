"""Checkpoints a later session can resume from: what each records, which one to resume, and which to refuse.

Tunix's ``CheckpointManager`` (Orbax) writes ``<output>/checkpoint/<step>/`` with the model params (only the
LoRA params when the model has adapters) and the optimizer state (its step counts included, so the optax
learning-rate schedule continues where it stopped); ``PeftTrainer`` restores the latest complete one when it
is built and skips the batches already trained. This module adds only what Tunix does not record, as the
checkpoint's Orbax custom metadata under ``"tunix_rt"``:

- ``config_fingerprint``: sha256 of the config values that shape the training trajectory (model, LoRA, data
  and its sha256, optimisation incl. ``max_steps`` and ``seed``), and those values (``config``), so that a
  checkpoint from another config is refused with a line naming the first key that differs;
- ``data_position``: batches of the deterministic batch stream consumed (batch k is always ``order[k]``);
- ``rng``: the seed — the data order and the initialisation are drawn from it, the training step draws no
  random numbers (Tunix's Gemma 3 has no dropout);
- ``step`` and ``format``.

Orbax writes a step atomically (into ``<step>.orbax-checkpoint-tmp…`` renamed when finalized), so a step
that Orbax does not list as finalized is incomplete and never restored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig

RECORD_NAME = "tunix_rt"  # our key in the checkpoint's Orbax custom metadata
RECORD_FORMAT = 1
CHECKPOINT_DIR = "checkpoint"  # the checkpoint root inside a run's --output folder

# Keys that never change the training trajectory: names, where files are found, evaluation, logging, sharding
# (Orbax restores onto any mesh), checkpointing itself.
_NOT_FINGERPRINTED = {
    "name", "model.weights_glob", "model.kaggle_model_source", "data.eval_set", "training.log_every",
    "training.smoke_steps",
}
_SECTIONS = ("model", "lora", "data", "training")


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed: missing, incomplete or from another config (one line)."""


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a training trajectory: the digest and the values it was computed from."""

    digest: str
    fields: dict[str, Any]  # dotted config key → value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def config_fingerprint(cfg: TrainConfig, dataset_sha256: str) -> Fingerprint:
    """The fingerprint of ``cfg`` (after command-line overrides) training on data with ``dataset_sha256``."""
    fields: dict[str, Any] = {}
    raw = asdict(cfg)
    for section in _SECTIONS:
        _flatten(section, raw[section], fields)
    fields = {k: v for k, v in sorted(fields.items()) if k not in _NOT_FINGERPRINTED}
    fields["data.dataset_sha256"] = dataset_sha256
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return Fingerprint(hashlib.sha256(canonical.encode("utf-8")).hexdigest(), fields)


def record(fingerprint: Fingerprint, step: int, data_position: int, seed: int) -> dict[str, Any]:
    """The ``"tunix_rt"`` custom metadata saved with checkpoint ``step``."""
    return {
        "format": RECORD_FORMAT,
        "step": step,
        "data_position": data_position,
        "rng": {"seed": seed},
        "config_fingerprint": fingerprint.digest,
        "config": fingerprint.fields,
    }


@dataclass(frozen=True)
class ResumePoint:
    """A complete checkpoint of this config: where its step folders are and which step to continue from."""

    given: str  # --resume_from as the user wrote it (for messages and run_result.json)
    root: Path  # the folder holding the <step>/ folders
    step: int
    record: dict[str, Any]


def checkpoint_root(path: Path) -> Path:
    """A previous run's checkpoint folder: ``DIR/checkpoint`` when DIR is its --output, else DIR itself."""
    return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path


def _read_only_manager(root: Path) -> Any:
    import orbax.checkpoint as ocp

    # read_only: a previous session's output is mounted read-only on Kaggle (/kaggle/input).
    return ocp.CheckpointManager(root.resolve(), options=ocp.CheckpointManagerOptions(read_only=True))


def complete_steps(root: Path) -> tuple[list[int], list[str]]:
    """(complete steps, names of incomplete step folders) under a checkpoint folder.

    Complete = Orbax lists the step as finalized (not a ``<step>.orbax-checkpoint-tmp…`` folder) and its
    ``commit_success.txt`` marker, the last file Orbax writes when it finalizes a step, is there (a copy that
    lost files may lack it)."""
    import orbax.checkpoint as ocp

    if not root.is_dir():
        return [], []
    marker = ocp.path.atomicity_types.COMMIT_SUCCESS_FILE
    finalized = ocp.utils.checkpoint_steps(root)
    complete = sorted(s for s in finalized if (root / str(s) / marker).is_file())
    tmp = ocp.path.atomicity_types.TMP_DIR_SUFFIX
    incomplete = sorted([p.name for p in root.iterdir() if tmp in p.name]
                        + [str(s) for s in finalized if s not in complete])
    return complete, incomplete


def find_resume_point(given: str, fingerprint: Fingerprint) -> ResumePoint:
    """The latest complete checkpoint under ``given`` (a run's --output folder or its checkpoint folder).

    Raises ResumeError (one line) when there is none, when a newer step is finalized but lacks its marker
    (Tunix would restore that one), or when it was saved by another config or not by this trainer. Steps never
    finalized (a write cut short) are skipped: the newest complete step before them is resumed."""
    import orbax.checkpoint as ocp

    path = Path(given)
    if not path.is_dir():
        raise ResumeError(f"--resume_from {given}: no such folder")
    root = checkpoint_root(path)
    steps, incomplete = complete_steps(root)
    if not steps:
        if incomplete:
            raise ResumeError(f"--resume_from {given}: no complete checkpoint, only incomplete "
                              f"{', '.join(incomplete)} (never finalized by Orbax: the write was cut short)")
        raise ResumeError(f"--resume_from {given}: no checkpoint there (expected {CHECKPOINT_DIR}/<step>/)")
    step = steps[-1]
    newest = max(ocp.utils.checkpoint_steps(root))
    if newest != step:  # Tunix restores Orbax's latest finalized step: it must be the complete one
        raise ResumeError(f"--resume_from {given}: checkpoint {newest} lacks Orbax's "
                          f"{ocp.path.atomicity_types.COMMIT_SUCCESS_FILE} (an incomplete copy); remove it to "
                          f"resume from {step}")
    manager = _read_only_manager(root)
    try:
        custom = manager.metadata(step).custom_metadata or {}
    finally:
        manager.close()
    found = custom.get(RECORD_NAME)
    if not isinstance(found, dict) or found.get("format") != RECORD_FORMAT:
        raise ResumeError(f"--resume_from {given}: checkpoint {step} has no tunix-rt resume record "
                          "(not saved by this trainer)")
    if found.get("config_fingerprint") != fingerprint.digest:
        theirs = found.get("config") or {}
        differing = [k for k in sorted(set(theirs) | set(fingerprint.fields))
                     if theirs.get(k) != fingerprint.fields.get(k)]
        detail = (f"{differing[0]}: {theirs.get(differing[0])!r} there, {fingerprint.fields.get(differing[0])!r} "
                  f"here" if differing else "fingerprint differs")
        raise ResumeError(f"--resume_from {given}: checkpoint {step} was trained with another config "
                          f"({detail}); resume it with the config it was trained with")
    return ResumePoint(given=given, root=root.resolve(), step=step, record=found)


def session_manager(root: Path, *, interval_steps: int, max_to_keep: int, is_last_step: Callable[[int], bool],
                    record_fn: Callable[[int], dict[str, Any]]) -> Any:
    """Tunix's CheckpointManager on ``root`` that saves every ``interval_steps`` steps (0: never by interval)
    and at the session's last step (``is_last_step``, asked once per step), with ``record_fn(step)`` as each
    checkpoint's ``"tunix_rt"`` metadata. ``seconds`` accumulates the time spent saving (and closing)."""
    import orbax.checkpoint as ocp
    from orbax.checkpoint import checkpoint_managers as policies
    from tunix.sft import checkpoint_manager

    class SessionEndPolicy:
        """Orbax SaveDecisionPolicy: save the step the session ends at. Listed first in AnySavePolicy, which
        stops at the first True, so it sees every step."""

        def should_save(self, step: Any, previous_steps: Any, *, context: Any) -> bool:
            del previous_steps, context
            return is_last_step(step.step)

    class SessionCheckpointManager(checkpoint_manager.CheckpointManager):
        """Tunix's manager; every save (the trainer's periodic one and its forced last one) carries our
        record, and the time spent in saves is measured."""

        seconds = 0.0

        def save(self, step: int, model: Any, optimizer: Any = None, save_only_lora_params: bool = False,
                 force: bool = False, custom_metadata: dict[str, Any] | None = None) -> bool:
            t0 = time.perf_counter()
            saved = super().save(step, model, optimizer, save_only_lora_params=save_only_lora_params,
                                 force=force, custom_metadata={**(custom_metadata or {}),
                                                               RECORD_NAME: record_fn(step)})
            if saved:
                self.seconds += time.perf_counter() - t0
            return saved

        def close(self) -> None:
            t0 = time.perf_counter()
            super().close()  # waits for the asynchronous write to be finalized
            self.seconds += time.perf_counter() - t0

    chosen: list[Any] = [SessionEndPolicy()]
    if interval_steps:
        chosen.append(policies.FixedIntervalPolicy(interval_steps))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           save_decision_policy=policies.AnySavePolicy(chosen))
    return SessionCheckpointManager(root_directory=str(root), options=options)


def saved_steps(root: Path) -> list[int]:
    """Complete checkpoint steps under ``root`` (after a run: what the next session may resume)."""
    return complete_steps(root)[0]
