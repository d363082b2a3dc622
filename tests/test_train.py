"""training/train_jax.py end to end: the runbook smoke command, bad input, the 4-device mesh, the safetensors
load path (+ LoRA, bf16) on generated tiny weights, and (slow) a full run that really learns."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tunix_rt.training.metric_line import FIELDS, parse_line

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"
RUNBOOK_LINE = ("python training/train_jax.py --config training/configs/sft_tiny.yaml "
                "--output ./output/m33_rehearsal --dataset dev-reasoning-v2 --device cpu --smoke_steps 2")
RUNBOOK = shlex.split(RUNBOOK_LINE)[1:]  # verbatim; `python` becomes this interpreter
OUTPUT_FILES = {"metrics.jsonl", "predictions.jsonl", "eval_results.json", "run_result.json"}


def _run(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(extra_env or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _check_consistent(out: Path) -> dict[str, Any]:
    """The four files exist and run_result's numbers are the ones in metrics/eval_results."""
    assert {p.name for p in out.iterdir()} >= OUTPUT_FILES
    result = json.loads((out / "run_result.json").read_text(encoding="utf-8"))
    assert result["status"] == "complete" and result["error"] is None
    metrics = _read_jsonl(out / "metrics.jsonl")
    training = result["training"]
    assert metrics[0]["step"] == 1 and metrics[-1]["step"] == training["steps"] == training["max_steps"]
    assert training["first_loss"] == pytest.approx(metrics[0]["loss"], abs=1e-6)
    assert training["final_loss"] == pytest.approx(metrics[-1]["loss"], abs=1e-6)
    assert training["tokens_trained"] == metrics[-1]["tokens"] > 0
    for row in metrics:
        assert tuple(sorted(row)) == tuple(sorted(FIELDS))
    evals = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))
    for key in ("answer_correctness", "format_compliance", "n_items", "n_correct", "n_well_formed"):
        assert result["eval"][key] == evals[key]
    predictions = _read_jsonl(out / "predictions.jsonl")
    assert len(predictions) == evals["n_items"] == result["eval_set"]["n_items"]
    assert sum(p["well_formed"] for p in predictions) == evals["n_well_formed"]
    phases = {"import", "data", "model_init", "compile", "train", "generate", "score", "checkpoint", "total"}
    assert set(result["timings_s"]) == phases
    _follows_the_contract(out)
    return result


def _follows_the_contract(out: Path) -> None:
    """What training wrote is what training/contract.py says (the schemas automation checks it against)."""
    from jsonschema import Draft202012Validator
    from tunix_rt.training import contract

    for name in ("run_result", "eval_results"):
        doc = json.loads((out / contract.FILES[name]).read_text(encoding="utf-8"))
        Draft202012Validator(contract.schema(name)).validate(doc)
    for line in _read_jsonl(out / contract.PREDICTIONS):
        Draft202012Validator(contract.schema("prediction")).validate(line)


def test_runbook_smoke_command_from_an_unpacked_training_folder(tmp_path: Path) -> None:
    # The kernel runs an unpacked copy of training/ where tunix_rt is not installed: copy it and run the
    # runbook's command verbatim from the folder above it.
    shutil.copytree(TRAINING, tmp_path / "training", ignore=shutil.ignore_patterns("__pycache__"))
    proc = _run(RUNBOOK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "output" / "m33_rehearsal"
    result = _check_consistent(out)
    assert result["mode"] == "smoke" and result["checkpoint"] is None
    assert not (out / "checkpoint").exists()
    assert result["model"]["id"] == "tunix-rt/gemma3-tiny"
    assert result["model"]["source"] == "random-init" and result["model"]["finetune"] == "full"
    assert result["model"]["param_count"] == result["model"]["trainable_param_count"] > 0
    assert result["config"]["name"] == "sft_tiny" and len(result["config"]["sha256"]) == 64
    assert result["dataset"] == {"name": "dev-reasoning-v2", "sha256": result["dataset"]["sha256"],
                                 "n_traces": 550}
    assert result["devices"]["platform"] == "cpu" and result["devices"]["count"] == 1
    assert result["versions"]["tunix"] and result["versions"]["jax"]
    assert "--smoke_steps 2" in result["command"]
    # One record, two places: the console's progress lines are metrics.jsonl's rows.
    printed = [rec for rec in map(parse_line, proc.stdout.splitlines()) if rec is not None]
    assert printed == _read_jsonl(out / "metrics.jsonl")
    assert printed[-1]["total_steps"] == 2 and printed[-1]["device_kind"] == "cpu"
    assert printed[0]["tokens_per_second"] is None and printed[-1]["tokens_per_second"] > 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["--dataset", "no-such-set"], "unknown dataset 'no-such-set'"),
        (["--eval_set", "missing/eval.jsonl"], "missing/eval.jsonl does not exist"),
        (["--config", "BAD_CONFIG"], "training.num_steps: unknown key"),
        (["--config", "BAD_TYPE"], "training.batch_size: expected int, got 'a'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, change: list[str], expected: str) -> None:
    raw = yaml.safe_load((TRAINING / "configs" / "sft_tiny.yaml").read_text(encoding="utf-8"))
    raw["training"]["num_steps"] = 100
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    raw["training"].pop("num_steps")
    raw["training"]["batch_size"] = "a"
    (tmp_path / "badtype.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    subst = {"BAD_CONFIG": str(tmp_path / "bad.yaml"), "BAD_TYPE": str(tmp_path / "badtype.yaml")}
    args = list(RUNBOOK)
    args[args.index("--output") + 1] = str(tmp_path / "out")
    flag, value = change[0], subst.get(change[1], change[1])
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    proc = _run(args, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("train_jax: error: ") and expected in lines[0]
    assert not (tmp_path / "out").exists()


def test_failure_during_the_run_is_recorded_exit_1(tmp_path: Path) -> None:
    raw = yaml.safe_load((TRAINING / "configs" / "sft_tiny.yaml").read_text(encoding="utf-8"))
    raw["lora"] = {"enabled": True, "rank": 4, "alpha": 8.0, "module_path": "no_such_module"}
    config = tmp_path / "lora_nomatch.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "out"
    proc = _run(["training/train_jax.py", "--config", str(config), "--output", str(out), "--device", "cpu",
                 "--smoke_steps", "1"], cwd=ROOT)
    assert proc.returncode == 1
    result = json.loads((out / "run_result.json").read_text(encoding="utf-8"))
    assert result["status"] == "failed" and "lora.module_path" in result["error"]
    assert result["training"] is None and result["eval"] is None
    assert result["devices"]["platform"] == "cpu" and result["timings_s"]["import"] is not None
    from jsonschema import Draft202012Validator
    from tunix_rt.training import contract

    Draft202012Validator(contract.schema("run_result")).validate(result)  # a failed run follows it too


def test_four_device_mesh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = list(RUNBOOK)
    args[args.index("--output") + 1] = str(out)
    proc = _run(args, cwd=ROOT, extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _check_consistent(out)
    assert result["devices"]["count"] == 4
    assert result["devices"]["mesh"] == {"fsdp": 4, "tp": 1}


# --- the real-Gemma load path on tiny generated weights -------------------------------------------------

TINY = {"num_layers": 2, "embed_dim": 64, "hidden_dim": 128, "num_heads": 2, "head_dim": 32,
        "num_kv_heads": 1, "sliding_window_size": 192, "num_embed": 512}


def _write_hf_gemma3(folder: Path, seed: int = 0) -> dict[str, Any]:
    """A tiny Gemma 3 checkpoint with HF tensor names and layouts (bf16 as the real one is; no torch)."""
    import ml_dtypes
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    d, f, n, k, h, v = (TINY[x] for x in ("embed_dim", "hidden_dim", "num_heads", "num_kv_heads", "head_dim",
                                          "num_embed"))

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.05).astype(ml_dtypes.bfloat16)

    tensors = {"model.embed_tokens.weight": w(v, d), "model.norm.weight": w(d)}
    for i in range(TINY["num_layers"]):
        p = f"model.layers.{i}."
        tensors.update({
            p + "self_attn.q_proj.weight": w(n * h, d),
            p + "self_attn.k_proj.weight": w(k * h, d),
            p + "self_attn.v_proj.weight": w(k * h, d),
            p + "self_attn.o_proj.weight": w(d, n * h),
            p + "self_attn.q_norm.weight": w(h),
            p + "self_attn.k_norm.weight": w(h),
            p + "mlp.gate_proj.weight": w(f, d),
            p + "mlp.up_proj.weight": w(f, d),
            p + "mlp.down_proj.weight": w(d, f),
            p + "input_layernorm.weight": w(d),
            p + "post_attention_layernorm.weight": w(d),
            p + "pre_feedforward_layernorm.weight": w(d),
            p + "post_feedforward_layernorm.weight": w(d),
        })
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json"):  # a real model folder carries its tokenizer
        shutil.copy(TRAINING / "tokenizer" / name, folder / name)
    return tensors


def _submission_like_config(path: Path) -> Path:
    """submission_gemma3_1b.yaml with the tiny architecture instead of the 1B preset (same load path)."""
    raw = yaml.safe_load((TRAINING / "configs" / "submission_gemma3_1b.yaml").read_text(encoding="utf-8"))
    raw["name"] = "submission_tiny"
    raw["model"]["id"] = "tunix-rt/gemma3-tiny-safetensors"
    raw["model"].pop("preset")
    raw["model"]["architecture"] = dict(TINY)
    raw["model"]["weights_glob"] = "**/tiny-gemma3/*.safetensors"
    raw["lora"]["rank"] = 4
    raw["data"]["seq_len"] = 128
    raw["generation"].update(max_new_tokens=16, max_prompt_length=64)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_safetensors_loader_reads_hf_tensors(tmp_path: Path) -> None:
    import numpy as np
    from tunix_rt.training.config import load_config
    from tunix_rt.training.devices import make_mesh
    from tunix_rt.training.model import build_model, model_spec

    tensors = _write_hf_gemma3(tmp_path / "tiny-gemma3")
    cfg = load_config(_submission_like_config(tmp_path / "c.yaml")).config
    mesh, _ = make_mesh(cfg.mesh, "cpu")
    spec = model_spec(cfg.model, 512)
    model = build_model(spec, mesh, tmp_path / "tiny-gemma3", seed=0)
    emb = np.asarray(model.embedder.input_embedding[...], dtype=np.float32)
    np.testing.assert_array_equal(emb, tensors["model.embed_tokens.weight"].astype(np.float32))
    gate = np.asarray(model.layers[1].mlp.gate_proj.kernel[...], dtype=np.float32)
    np.testing.assert_array_equal(gate, tensors["model.layers.1.mlp.gate_proj.weight"].astype(np.float32).T)


def test_safetensors_lora_bf16_run_on_four_devices_found_by_glob(tmp_path: Path) -> None:
    inputs = tmp_path / "kaggle_input"
    _write_hf_gemma3(inputs / "gemma-3" / "tiny-gemma3")
    config = _submission_like_config(tmp_path / "submission_tiny.yaml")
    out = tmp_path / "out"
    proc = _run(["training/train_jax.py", "--config", str(config), "--output", str(out), "--device", "cpu",
                 "--smoke_steps", "2", "--input_dir", str(inputs)], cwd=ROOT,
                extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _check_consistent(out)
    model = result["model"]
    assert model["source"] == "safetensors" and model["dtype"] == "bfloat16"
    assert model["weights_path"] == str((inputs / "gemma-3" / "tiny-gemma3").resolve())
    assert model["finetune"] == "lora" and model["lora_rank"] == 4
    assert 0 < model["trainable_param_count"] < model["param_count"]
    assert result["devices"]["mesh"] == {"fsdp": 4, "tp": 1}


def test_model_dir_overrides_glob_and_missing_weights_exit_2(tmp_path: Path) -> None:
    config = _submission_like_config(tmp_path / "submission_tiny.yaml")
    base = ["training/train_jax.py", "--config", str(config), "--output", str(tmp_path / "out"),
            "--device", "cpu", "--smoke_steps", "1"]
    proc = _run([*base, "--input_dir", str(tmp_path / "empty")], cwd=ROOT)
    assert proc.returncode == 2 and "no files match" in proc.stderr and "--model_dir" in proc.stderr
    proc = _run([*base, "--model_dir", str(tmp_path)], cwd=ROOT)
    assert proc.returncode == 2 and "no *.safetensors" in proc.stderr
    assert not (tmp_path / "out").exists()
    _write_hf_gemma3(tmp_path / "weights")
    proc = _run([*base, "--model_dir", str(tmp_path / "weights")], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "run_result.json").read_text(encoding="utf-8"))
    assert result["model"]["weights_path"] == str((tmp_path / "weights").resolve())


@pytest.mark.slow
def test_full_run_learns_and_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "full"
    proc = _run(["training/train_jax.py", "--config", "training/configs/sft_tiny.yaml", "--output", str(out),
                 "--device", "cpu"], cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _check_consistent(out)
    assert result["mode"] == "full"
    assert result["training"]["loss_drop"] >= 0.6
    assert result["checkpoint"]["format"] == "orbax" and result["checkpoint"]["step"] == 1500
    assert (out / "checkpoint" / "1500" / "model_params").is_dir()
