"""Checkpoint size and save/restore time (measured), and the Gemma 3 1B projection against Kaggle's 20 GB.

    python bench/checkpoint.py [--repeat 5] [--gemma-lora] [--out DIR]

Measured on this machine, through the trainer's own path (``training/checkpoints.py`` on Tunix's
CheckpointManager, i.e. Orbax): for the tiny profile (``sft_tiny.yaml``, full fine-tuning, float32) a model and
its AdamW state are built as ``train_jax.py`` builds them and trained ``--steps`` steps on random tokens (so
the moments are not the zeros Orbax's compression would shrink), then saved ``--repeat`` times into fresh folders
(``save_s``: the save call plus waiting for Orbax to finalize the step) and restored by building a Tunix
``PeftTrainer`` on the checkpoint, as ``--resume_from`` does (``restore_s``). ``bytes_on_disk`` is the sum of the
step folder's file sizes. With ``--gemma-lora`` the same is done once for the submission config's shape:
Gemma 3 1B (Tunix ``ModelConfig.gemma3_1b_it``, random bf16 weights: the checkpoint holds only the adapters,
so the weights' values do not matter) with qwix LoRA at the config's rank, one step on a 2 x 32-token batch
(~5 GB of RAM, several minutes on 2 cores).

Computed, not measured: the Gemma 3 1B parameter count (Tunix's model built abstractly with
``nnx.eval_shape``), its LoRA adapter count at the submission rank (qwix applied to the abstract model), and
the bytes of a full-fine-tuning checkpoint: ``nnx.state(model)`` (what Tunix saves) and the AdamW state
(``optax`` ``init`` evaluated abstractly: two moments in the parameters' dtype plus step counts) for bf16 and
fp32 parameters. Kaggle keeps about 20 GB of ``/kaggle/working`` as the output (kaggle-cli docs; the notebook
template: "You can write up to 20GB"); Orbax keeps the previous step until a new one is finalized, so a save
needs room for two checkpoints while it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from machine import median, out_arg, table, write_result

KAGGLE_OUTPUT_LIMIT_BYTES = 20 * 10**9  # "You can write up to 20GB" (Kaggle's notebook template, docs)


def _training() -> Any:
    import tunix_rt.training as training

    return training


def _config(name: str) -> Any:
    from tunix_rt.training.config import load_config

    return load_config(Path(_training().__file__).resolve().parent / "configs" / f"{name}.yaml").config


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _trainer(model: Any, cfg: Any, restore_root: Path | None = None) -> Any:
    """A Tunix PeftTrainer as training/sft.py builds it (restoring from ``restore_root`` when given)."""
    import orbax.checkpoint as ocp
    from tunix.sft import peft_trainer
    from tunix_rt.training.sft import learning_rate_schedule, make_optimizer

    steps = cfg.training.max_steps
    return peft_trainer.PeftTrainer(
        model, make_optimizer(cfg.training, learning_rate_schedule(cfg.training, steps)),
        peft_trainer.TrainingConfig(
            eval_every_n_steps=steps + 1, max_steps=steps, pbar_description=None,
            checkpoint_root_directory=str(restore_root) if restore_root else None,
            checkpointing_options=ocp.CheckpointManagerOptions(read_only=True) if restore_root else None))


def _build(cfg: Any, vocab: int) -> tuple[Any, Any, Any]:
    """(model factory, mesh, spec) for ``cfg`` on this machine's devices."""
    from tunix_rt.training import model as model_lib
    from tunix_rt.training.devices import make_mesh

    mesh, dev = make_mesh(cfg.mesh, "cpu")
    spec = model_lib.model_spec(cfg.model, vocab)

    def make() -> Any:
        model = model_lib.build_model(spec, mesh, None, cfg.training.seed)
        if cfg.lora.enabled:
            model = model_lib.apply_lora(model, cfg.lora, mesh, dev.fsdp, cfg.training.seed)
        return model

    return make, mesh, spec


def _train_steps(trainer: Any, vocab: int, steps: int, batch: int, seq_len: int) -> None:
    """``steps`` optimizer steps on random tokens (loss over every position)."""
    import numpy as np
    from tunix.sft import peft_trainer
    from tunix_rt.training.batches import model_inputs_fn

    rng = np.random.default_rng(0)
    trainer.with_gen_model_input_fn(model_inputs_fn(pad_id=0))
    trainer.train(peft_trainer.TrainingInput(
        input_tokens=rng.integers(1, vocab, (batch, seq_len), dtype=np.int32),
        input_mask=np.ones((batch, seq_len), dtype=np.int32)) for _ in range(steps))


def measure(cfg: Any, vocab: int, repeat: int, workdir: Path, steps: int, batch: int,
            seq_len: int) -> dict[str, Any]:
    """Train ``steps`` steps, then save and restore ``repeat`` times through the trainer's path."""
    import jax
    from tunix_rt.training.checkpoints import config_fingerprint, record, session_manager

    make, mesh, _ = _build(cfg, vocab)
    fingerprint = config_fingerprint(cfg, "bench")
    runs = []
    with jax.set_mesh(mesh):
        trainer = _trainer(make(), cfg)
        _train_steps(trainer, vocab, steps, batch, seq_len)
        assert trainer.train_steps == steps, trainer.train_steps
        for i in range(repeat):
            root = workdir / f"ckpt{i}"
            manager = session_manager(root, interval_steps=0, max_to_keep=1, is_last_step=lambda step: True,
                                      record_fn=lambda step: record(fingerprint, step, step, cfg.training.seed))
            t0 = time.perf_counter()
            manager.save(steps, trainer.model, trainer.optimizer, save_only_lora_params=cfg.lora.enabled,
                         force=True)
            manager.close()  # Orbax writes asynchronously: the step is complete once close() returns
            save_s = time.perf_counter() - t0
            step_dir = root / str(steps)
            sizes = {p.name: _dir_bytes(p) for p in step_dir.iterdir() if p.is_dir()}
            fresh = make()
            t0 = time.perf_counter()
            restored = _trainer(fresh, cfg, restore_root=root)
            restore_s = time.perf_counter() - t0
            assert restored.train_steps == steps, restored.train_steps
            restored.checkpoint_manager.close()
            runs.append({"save_s": round(save_s, 4), "restore_s": round(restore_s, 4),
                         "bytes_on_disk": _dir_bytes(step_dir), "item_bytes": sizes})
            shutil.rmtree(root)
            print(f"  save {save_s:.3f} s, restore {restore_s:.3f} s, {runs[-1]['bytes_on_disk']:,} bytes",
                  flush=True)
    from tunix_rt.training.model import param_counts

    total, trainable = param_counts(trainer.model, cfg.lora.enabled)
    return {"config": cfg.name, "finetune": "lora" if cfg.lora.enabled else "full", "dtype": cfg.model.dtype,
            "trained_steps": steps, "batch": [batch, seq_len],
            "lora_rank": cfg.lora.rank if cfg.lora.enabled else None, "param_count": total,
            "trainable_param_count": trainable, "bytes_on_disk": runs[0]["bytes_on_disk"],
            "item_bytes": runs[0]["item_bytes"], "save_s_median": median(r["save_s"] for r in runs),
            "restore_s_median": median(r["restore_s"] for r in runs), "runs": runs}


def _tree_bytes(tree: Any) -> int:
    import jax

    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def _abstract_lora(model: Any, section: Any) -> Any:
    """training/model.py's apply_lora without its mesh (jax.set_mesh cannot run inside nnx.eval_shape)."""
    import jax.numpy as jnp
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path=section.module_path, rank=section.rank, alpha=section.alpha)
    return qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(1), last_tokens=jnp.ones((2, 1), jnp.int32),
                                    positions=jnp.zeros((2, 1), jnp.int32), cache=None,
                                    attention_mask=jnp.ones((2, 1, 1), jnp.bool_))


def project_gemma3_1b() -> dict[str, Any]:
    """Parameter, adapter and optimizer-state bytes of Gemma 3 1B, computed on abstract arrays."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3
    from tunix_rt.training.sft import learning_rate_schedule, make_optimizer

    cfg = _config("submission_gemma3_1b")
    tx = make_optimizer(cfg.training, learning_rate_schedule(cfg.training, cfg.training.max_steps))
    out: dict[str, Any] = {"preset": cfg.model.preset, "lora_rank": cfg.lora.rank, "variants": {}}
    for dtype_name, dtype in (("bfloat16", jnp.bfloat16), ("float32", jnp.float32)):
        mcfg = replace(getattr(gemma3.ModelConfig, cfg.model.preset)(), param_dtype=dtype)
        abstract = nnx.eval_shape(lambda mcfg=mcfg: gemma3.Gemma3(mcfg, rngs=nnx.Rngs(0)))
        params = nnx.state(abstract, nnx.Param)
        count = int(sum(x.size for x in jax.tree.leaves(params)))
        model_bytes = _tree_bytes(nnx.state(abstract))  # what Tunix saves for full fine-tuning
        opt_bytes = _tree_bytes(jax.eval_shape(tx.init, params))
        out["param_count"] = count
        out["variants"][f"full_{dtype_name}"] = {
            "finetune": "full", "param_dtype": dtype_name, "model_bytes": model_bytes,
            "optimizer_bytes": opt_bytes, "checkpoint_bytes": model_bytes + opt_bytes}
        if dtype_name == "bfloat16":
            lora_model = nnx.eval_shape(lambda mcfg=mcfg: _abstract_lora(gemma3.Gemma3(mcfg, rngs=nnx.Rngs(0)),
                                                                         cfg.lora))
            adapters = nnx.state(lora_model, nnx.LoRAParam)
            lora_count = int(sum(x.size for x in jax.tree.leaves(adapters)))
            lora_bytes = _tree_bytes(adapters)
            lora_opt = _tree_bytes(jax.eval_shape(tx.init, adapters))
            out["lora_param_count"] = lora_count
            out["variants"]["lora_bfloat16"] = {
                "finetune": f"lora r{cfg.lora.rank}", "param_dtype": dtype_name, "model_bytes": lora_bytes,
                "optimizer_bytes": lora_opt, "checkpoint_bytes": lora_bytes + lora_opt}
    for v in out["variants"].values():
        v["fraction_of_20GB"] = round(v["checkpoint_bytes"] / KAGGLE_OUTPUT_LIMIT_BYTES, 4)
        v["peak_bytes_during_save"] = 2 * v["checkpoint_bytes"]  # the previous step stays until finalized
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="saves/restores of the tiny model (default 5)")
    p.add_argument("--steps", type=int, default=5, help="training steps before the tiny model's saves")
    p.add_argument("--gemma-lora", action="store_true",
                   help="also save/restore once the submission config's Gemma 3 1B LoRA checkpoint (~2 GB RAM)")
    out_arg(p)
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from tunix_rt.training.tokenizer import load_tokenizer

    result: dict[str, Any] = {"measured": {}, "computed": {}}
    with tempfile.TemporaryDirectory(prefix="tunix-rt-ckpt-") as tmp:
        print("tiny (sft_tiny, full fine-tuning, float32):", flush=True)
        tiny = _config("sft_tiny")
        result["measured"]["tiny"] = measure(tiny, len(load_tokenizer(None)), args.repeat, Path(tmp), args.steps,
                                             tiny.training.batch_size, tiny.data.seq_len)
        if args.gemma_lora:
            print("Gemma 3 1B shape, LoRA (submission config), random bf16 weights:", flush=True)
            sub = _config("submission_gemma3_1b")
            result["measured"]["gemma3_1b_lora"] = measure(sub, 262144, 1, Path(tmp), 1, 2, 32)
    result["computed"]["gemma3_1b"] = proj = project_gemma3_1b()

    rows = [(name, m["finetune"], m["param_count"], m["trainable_param_count"], m["bytes_on_disk"],
             m["save_s_median"], m["restore_s_median"]) for name, m in result["measured"].items()]
    print()
    print(table(["measured", "finetune", "params", "trainable", "bytes on disk", "save s", "restore s"], rows))
    print(f"\nGemma 3 1B (computed): {proj['param_count']:,} parameters, LoRA r{proj['lora_rank']} adapters "
          f"{proj['lora_param_count']:,}")
    print(table(["variant", "model GB", "optimizer GB", "checkpoint GB", "of 20 GB", "peak during save GB"],
                [(name, v["model_bytes"] / 1e9, v["optimizer_bytes"] / 1e9, v["checkpoint_bytes"] / 1e9,
                  v["fraction_of_20GB"], v["peak_bytes_during_save"] / 1e9)
                 for name, v in proj["variants"].items()]))
    path = write_result(args.out, "checkpoint", {"repeat": args.repeat, **result})
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
