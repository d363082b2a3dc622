"""The Gemma 3 model a config asks for: tiny random init, or HF safetensors through Tunix's loader; qwix LoRA.

``find_weights_dir`` imports nothing heavy so bad model paths are caught before any output is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, LoraSection, ModelSection


class ModelSourceError(ValueError):
    """No usable model files where the config or the flags point (one line, names the place)."""


def find_weights_dir(section: ModelSection, model_dir: str | None, input_dir: str) -> Path | None:
    """The folder holding the HF ``*.safetensors`` (and tokenizer) for a safetensors model; None otherwise.

    ``--model_dir`` wins; else ``model.weights_glob`` is matched under ``input_dir`` (Kaggle mounts
    ``model_sources`` under /kaggle/input/…) and the matching files' folder is used.
    """
    if section.source != "safetensors":
        if model_dir:
            raise ModelSourceError(f"--model_dir given, but model.source {section.source!r} loads no weights")
        return None
    if model_dir:
        folder = Path(model_dir)
        if not folder.is_dir() or not any(folder.glob("*.safetensors")):
            raise ModelSourceError(f"--model_dir {folder}: no *.safetensors files there")
        return folder.resolve()
    if not section.weights_glob:
        raise ModelSourceError("model.weights_glob is null: pass --model_dir DIR (a folder of *.safetensors)")
    root = Path(input_dir)
    folders = sorted({p.parent.resolve() for p in root.glob(section.weights_glob) if p.is_file()})
    if not folders:
        hint = f" (attach {section.kaggle_model_source})" if section.kaggle_model_source else ""
        raise ModelSourceError(
            f"no files match {section.weights_glob!r} under {root}{hint}; or pass --model_dir DIR"
        )
    if len(folders) > 1:
        listed = ", ".join(str(f) for f in folders)
        raise ModelSourceError(f"{section.weights_glob!r} matches several folders under {root}: {listed}; "
                               "pass --model_dir DIR")
    return folders[0]


@dataclass(frozen=True)
class ModelSpec:
    """The Tunix ModelConfig to build and what it is."""

    tunix_config: Any  # tunix.models.gemma3.model.ModelConfig
    dtype: Any  # jnp dtype of the parameters


def model_spec(section: ModelSection, vocab_size: int) -> ModelSpec:
    """Turn the config's model section into a Tunix ``ModelConfig`` (ConfigError on an unknown preset)."""
    import jax.numpy as jnp
    from tunix.models.gemma3 import model as gemma3

    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[section.dtype]
    if section.preset is not None:
        preset = getattr(gemma3.ModelConfig, section.preset, None)
        if not callable(preset) or section.preset.startswith("_"):
            raise ConfigError(f"model.preset: {section.preset!r} is not a Tunix gemma3 ModelConfig preset")
        cfg = dataclasses.replace(preset(), param_dtype=dtype)
    else:
        arch = section.architecture
        assert arch is not None  # config._check guarantees one of preset/architecture
        cfg = gemma3.ModelConfig(
            num_layers=arch.num_layers,
            num_embed=arch.num_embed or vocab_size,
            embed_dim=arch.embed_dim,
            hidden_dim=arch.hidden_dim,
            num_heads=arch.num_heads,
            head_dim=arch.head_dim,
            num_kv_heads=arch.num_kv_heads,
            sliding_window_size=arch.sliding_window_size,
            param_dtype=dtype,
        )
    if cfg.num_embed < vocab_size:
        raise ConfigError(f"model: {cfg.num_embed} embedding rows < tokenizer vocabulary {vocab_size}")
    return ModelSpec(tunix_config=cfg, dtype=dtype)


def build_model(spec: ModelSpec, mesh: Any, weights_dir: Path | None, seed: int) -> Any:
    """The Gemma3 nnx model sharded over ``mesh``: random init, or the safetensors in ``weights_dir``."""
    import jax
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3
    from tunix.models.gemma3 import params_safetensors

    if weights_dir is not None:
        return params_safetensors.create_model_from_safe_tensors(
            str(weights_dir), spec.tunix_config, mesh, dtype=spec.dtype
        )

    @nnx.jit
    def _init() -> Any:
        # Initialise inside jit with the partition specs as constraints: each device makes only its shard.
        model = gemma3.Gemma3(spec.tunix_config, rngs=nnx.Rngs(seed))
        state = nnx.state(model)
        nnx.update(model, jax.lax.with_sharding_constraint(state, nnx.get_partition_spec(state)))
        return model

    with jax.set_mesh(mesh):
        return _init()


def apply_lora(model: Any, section: LoraSection, mesh: Any, fsdp: int, seed: int) -> Any:
    """Add qwix LoRA adapters; afterwards Tunix's PeftTrainer trains only the ``nnx.LoRAParam`` leaves."""
    import jax
    import jax.numpy as jnp
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path=section.module_path, rank=section.rank, alpha=section.alpha)
    # qwix traces one forward pass; Gemma3.get_model_input() uses batch 2, which an fsdp axis wider than 2
    # cannot split, so the dummy batch is one row per fsdp shard.
    rows = max(2, fsdp)
    dummy = {
        "last_tokens": jnp.ones((rows, 1), dtype=jnp.int32),
        "positions": jnp.zeros((rows, 1), dtype=jnp.int32),
        "cache": None,
        "attention_mask": jnp.ones((rows, 1, 1), dtype=jnp.bool_),
    }
    with jax.set_mesh(mesh):
        lora_model = qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(seed + 1), **dummy)
    if not any(True for _ in jax.tree.leaves(nnx.state(lora_model, nnx.LoRAParam))):
        raise ConfigError(f"lora.module_path: {section.module_path!r} matched no module of the model")
    return lora_model


def param_counts(model: Any, lora: bool) -> tuple[int, int]:
    """(all parameters incl. adapters, trainable parameters)."""
    import jax
    from flax import nnx

    def _size(filt: Any) -> int:
        return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, filt))))

    total = _size(nnx.Param)  # LoRAParam is a Param subclass, so adapters are included
    return total, _size(nnx.LoRAParam) if lora else total
