"""Typed, strict training configs (YAML → frozen dataclasses).

Every key a config may hold is a field below, with its type, its default (defaults live here and only here)
and a comment saying what it does. Loading is strict: an unknown key, a value of the wrong type or a missing
required value raises :class:`ConfigError` whose one-line message names the file and the dotted key, e.g.
``training/configs/x.yaml: training.batch_size: expected int, got 'a'``. Nothing is silently ignored (the
origin project read ``model.model_id`` while its YAML said ``model.name`` and trained distilgpt2 instead).

This module imports no JAX, so the CLI and the unit tests can use it without the training stack.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class Architecture:
    """A Tunix ``gemma3.model.ModelConfig`` spelled out (used when ``model.preset`` is null)."""

    num_layers: int  # transformer blocks
    embed_dim: int  # model width d
    hidden_dim: int  # feed-forward width
    num_heads: int  # query heads
    head_dim: int  # width of one head (even: RoPE)
    num_kv_heads: int  # key/value heads (1 = multi-query, as Gemma 3 1B)
    sliding_window_size: int  # local-attention window of the sliding layers
    num_embed: int | None = None  # vocabulary rows; null = the tokenizer's length


@dataclass(frozen=True)
class ModelSection:
    """What model is trained and where its weights come from."""

    id: str  # the model's own id, reported as-is in run_result.json (never a Gemma id for a random model)
    source: Literal["random-init", "safetensors"]  # fresh random weights, or HF *.safetensors from a folder
    family: Literal["gemma3"] = "gemma3"  # Tunix model family (only Gemma 3 is wired)
    preset: str | None = None  # a Tunix ModelConfig constructor, e.g. gemma3_1b_it; null = use `architecture`
    architecture: Architecture | None = None  # explicit shape; exactly one of preset/architecture is set
    dtype: Literal["float32", "bfloat16"] = "float32"  # parameter dtype (bf16 on TPU, fp32 on CPU/T4)
    tokenizer: Literal["shipped", "model_dir"] = "shipped"  # training/tokenizer (BPE-512) or the model's own
    weights_glob: str | None = None  # glob under the input dir finding the *.safetensors (its folder is used)
    kaggle_model_source: str | None = None  # kernel-metadata model_sources entry that mounts the weights


@dataclass(frozen=True)
class LoraSection:
    """LoRA through qwix; when disabled every parameter trains (full fine-tuning)."""

    enabled: bool = False  # apply qwix LoRA adapters and train only them
    rank: int = 16  # adapter rank r
    alpha: float = 32.0  # adapter scale numerator (scale = alpha / rank)
    # modules that get adapters (regex over nnx module paths): attention and MLP projections
    module_path: str = (
        ".*q_einsum|.*kv_einsum|.*qkv_einsum|.*attn_vec_einsum|.*gate_proj|.*down_proj|.*up_proj"
    )


@dataclass(frozen=True)
class DataSection:
    """Training data and the evaluation set."""

    dataset: str  # dataset key (training/dataset_registry.py), overridable with --dataset
    eval_set: str = "evalsets/eval_v1.jsonl"  # eval JSONL, relative to the training folder unless absolute
    seq_len: int = 128  # fixed padded length of every example (one compile); a longer example is an error


@dataclass(frozen=True)
class TrainingSection:
    """Optimisation: AdamW with warmup and a decay schedule, clipped by global norm."""

    max_steps: int  # optimizer steps of a full run (fixed count, not a wall-clock cap)
    smoke_steps: int = 2  # steps of a smoke run when the kernel asks for smoke mode without a count
    batch_size: int = 16  # global batch (split over the mesh's fsdp axis; must divide evenly)
    learning_rate: float = 1e-3  # peak learning rate
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"  # decay after warmup
    warmup_ratio: float = 0.05  # fraction of the run's steps spent warming up linearly from 0
    end_lr_ratio: float = 0.05  # final learning rate as a fraction of the peak (cosine/linear)
    b1: float = 0.9  # AdamW first-moment decay
    b2: float = 0.98  # AdamW second-moment decay
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    clip_norm: float = 1.0  # global gradient-norm clip
    seed: int = 0  # model init, LoRA init and data order (overridable with --seed)
    log_every: int = 10  # metrics.jsonl gets step 1, every log_every-th step and the last step


@dataclass(frozen=True)
class MeshSection:
    """Device mesh (fsdp × tp) over every device JAX sees."""

    fsdp: int = -1  # data/parameter-sharding axis size; -1 = all devices left after tp
    tp: int = 1  # tensor-parallel axis size; -1 = all devices left after fsdp


@dataclass(frozen=True)
class GenerationSection:
    """Greedy generation on the eval set with Tunix's Sampler."""

    max_new_tokens: int = 96  # generation budget per item
    max_prompt_length: int = 64  # fixed prompt buffer (avoids recompiles; raised if a prompt is longer)
    batch_size: int = 32  # prompts per sampler call (the last batch is padded to this size)


@dataclass(frozen=True)
class CheckpointSection:
    """Orbax checkpoints of full runs (smoke runs never save), and when a session with a deadline stops."""

    enabled: bool = True  # save <output>/checkpoint/<step>/ (model_params, optimizer_state) in full runs
    interval_steps: int = 0  # also save every N optimizer steps (0 = only at the run's or session's end)
    max_to_keep: int = 1  # newest checkpoints kept; Orbax deletes an older one only after a newer one is complete
    # with --deadline_unix: stop training, save and exit once less than this margin (plus one step's time) is
    # left before the deadline; it must cover a checkpoint write and the outputs (Kaggle kills at the deadline)
    deadline_margin_s: float = 600.0


@dataclass(frozen=True)
class TrainConfig:
    """One training config file."""

    name: str  # config name reported in run_result.json
    model: ModelSection
    data: DataSection
    training: TrainingSection
    lora: LoraSection = field(default_factory=LoraSection)
    mesh: MeshSection = field(default_factory=MeshSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: TrainConfig
    path: Path
    sha256: str  # of the file's bytes


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints widen to float); else ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # `X | None` holding a value: X's own (maybe nested) error is clearest
            return _coerce(value, others[0], key)
        for arg in others:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
        return _build(tp, value, key + ".")
    # bool is an int subclass in Python: never let `true` pass as a number or 1 as a bool.
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this loader does not know is a bug here
        raise TypeError(f"unsupported config field type {tp!r}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``raw``: unknown keys, wrong types and missing values are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{prefix}{_show(key, quote=False)}: unknown key (allowed: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: missing value (expected {_type_name(hints[name])})")
    return cls(**values)


def _check(cfg: TrainConfig) -> None:
    """Rules across fields that types alone cannot express."""
    m = cfg.model
    if (m.preset is None) == (m.architecture is None):
        raise ConfigError("model.preset: set exactly one of model.preset and model.architecture")
    if m.source == "random-init" and m.id.lower().startswith("google/"):
        # evidence must never claim a Gemma checkpoint for randomly initialised weights
        raise ConfigError(f"model.id: {m.id!r} is a Google model id, but model.source is 'random-init'")
    if m.source == "safetensors" and m.tokenizer != "model_dir":
        raise ConfigError("model.tokenizer: a safetensors model must use its own tokenizer ('model_dir')")
    positive = {
        "data.seq_len": cfg.data.seq_len,
        "training.max_steps": cfg.training.max_steps,
        "training.smoke_steps": cfg.training.smoke_steps,
        "training.batch_size": cfg.training.batch_size,
        "training.log_every": cfg.training.log_every,
        "generation.max_new_tokens": cfg.generation.max_new_tokens,
        "generation.max_prompt_length": cfg.generation.max_prompt_length,
        "generation.batch_size": cfg.generation.batch_size,
        "lora.rank": cfg.lora.rank,
        "checkpoint.max_to_keep": cfg.checkpoint.max_to_keep,
    }
    if m.architecture is not None:
        positive.update({f"model.architecture.{k}": v for k, v in dataclasses.asdict(m.architecture).items()
                         if v is not None})
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: expected a positive value, got {_show(value)}")
    for key, value in (("checkpoint.interval_steps", cfg.checkpoint.interval_steps),
                       ("checkpoint.deadline_margin_s", cfg.checkpoint.deadline_margin_s)):
        if value < 0:
            raise ConfigError(f"{key}: expected 0 or a positive value, got {_show(value)}")
    ratio = cfg.training.warmup_ratio
    if not 0 <= ratio < 1:
        raise ConfigError(f"training.warmup_ratio: expected 0 <= value < 1, got {_show(ratio)}")
    if cfg.training.learning_rate <= 0:
        raise ConfigError(f"training.learning_rate: expected > 0, got {cfg.training.learning_rate!r}")
    for key, value in (("mesh.fsdp", cfg.mesh.fsdp), ("mesh.tp", cfg.mesh.tp)):
        if value == 0 or value < -1:
            raise ConfigError(f"{key}: expected a positive size or -1 (all devices), got {_show(value)}")
    if cfg.mesh.fsdp == -1 and cfg.mesh.tp == -1:
        raise ConfigError("mesh.tp: at most one of mesh.fsdp and mesh.tp may be -1")


MAX_SHOWN = 200  # characters of a value quoted in an error message (a hostile config must not flood the screen)
MAX_DEPTH = 64  # nesting a config may have (ours use 3): deeper is refused before PyYAML recurses into it


def _show(value: Any, *, quote: bool = True) -> str:
    """``value`` for an error message: its repr (or str), cut to :data:`MAX_SHOWN` characters."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader for configs: refuses duplicate keys (PyYAML would silently keep the last one), unhashable
    keys, anchors and aliases (``&a``/``*a``: nested aliases expand exponentially, a "billion laughs" config of
    a few hundred bytes takes gigabytes; configs have no use for them) and nesting deeper than
    :data:`MAX_DEPTH` (PyYAML's composer recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML {kind} {_show(event.anchor)} is not "
                              "allowed in a config (write the values out)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                raise ConfigError(f"line {line}: a mapping key must be a plain value, not {type(key).__name__}")
            if key in seen:
                raise ConfigError(f"{_show(key, quote=False)}: duplicate key (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(raw: Any) -> TrainConfig:
    """Validate a parsed YAML document (a mapping) into a :class:`TrainConfig`. Raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"top level: expected a mapping, got {type(raw).__name__}")
    cfg = _build(TrainConfig, raw)
    _check(cfg)
    return cfg


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a YAML config file; every error is one line starting with the file path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError, TypeError) as exc:
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({_show(first, quote=False)})") from None
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return LoadedConfig(config=cfg, path=path, sha256=hashlib.sha256(data).hexdigest())
