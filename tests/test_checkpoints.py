"""Sessions that checkpoint and resume (issue 12): a tiny run cut into 3 sessions and resumed twice ends where
one uninterrupted run ends; incomplete and other-config checkpoints are refused; the interval is honoured;
a wall-clock deadline ends a run cleanly; the kernel notebook resumes an attached previous session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tunix_rt.training.checkpoints import config_fingerprint
from tunix_rt.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"
STOCK = TRAINING / "configs" / "sft_tiny.yaml"
MAX_STEPS, PIECE = 30, 12  # sessions cover steps 1-12, 13-24, 25-30
DATASET = "dev-reasoning-v2"  # 550 traces: tokenizes in a second, unlike the config's x10 set
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax's name for a step folder it has not finalized


def _train(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    full_env.update(env)
    return subprocess.run([sys.executable, "training/train_jax.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _base(config: Path, output: Path) -> list[str]:
    return ["--config", str(config), "--output", str(output), "--dataset", DATASET, "--device", "cpu",
            "--max_steps", str(MAX_STEPS)]


def _variant(path: Path, **checkpoint: Any) -> Path:
    raw = yaml.safe_load(STOCK.read_text(encoding="utf-8"))
    raw["checkpoint"].update(checkpoint)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _result(out: Path) -> dict[str, Any]:
    return json.loads((out / "run_result.json").read_text(encoding="utf-8"))


def _metrics(out: Path) -> dict[int, dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["step"]: row for row in rows}


def _steps_on_disk(out: Path) -> list[str]:
    return sorted((p.name for p in (out / "checkpoint").iterdir()), key=lambda n: int(n.split(".")[0]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted 30-step run (checkpoint every 10 steps, keep 3) and the same schedule in 3 sessions
    of at most 12 steps, each resuming the previous one's output. Runs share an XLA compilation cache."""
    root = tmp_path_factory.mktemp("sessions")
    env = {"JAX_COMPILATION_CACHE_DIR": str(root / "xla-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    t0 = time.perf_counter()
    interval = _variant(root / "interval.yaml", interval_steps=10, max_to_keep=3)
    out: dict[str, Any] = {"one": root / "one", "s1": root / "s1", "s2": root / "s2", "s3": root / "s3"}
    procs = {"one": _train(_base(interval, out["one"]), env)}
    previous = None
    for name in ("s1", "s2", "s3"):
        resume = ["--resume_from", str(previous)] if previous else []
        procs[name] = _train([*_base(STOCK, out[name]), "--stop_after_steps", str(PIECE), *resume], env)
        previous = out[name]
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    out["procs"] = procs
    out["wall_s"] = time.perf_counter() - t0
    return out


@pytest.mark.kernel
def test_three_sessions_give_the_loss_curve_of_one_run(runs: dict[str, Any]) -> None:
    one, sessions = _result(runs["one"]), [_result(runs[n]) for n in ("s1", "s2", "s3")]
    assert [r["status"] for r in sessions] == ["cut_for_time", "cut_for_time", "complete"]
    assert [(r["session"]["start_step"], r["session"]["end_step"]) for r in sessions] == [(0, 12), (12, 24),
                                                                                          (24, 30)]
    assert [r["session"]["stop_reason"] for r in sessions] == ["stop_after_steps", "stop_after_steps",
                                                               "max_steps"]
    assert sessions[1]["session"]["resumed_from"] == {"path": str(runs["s1"]), "step": 12}
    assert sessions[0]["eval"] is None and not (runs["s1"] / "predictions.jsonl").exists()
    assert "cut for time (stop_after_steps) at step 12 of 30" in runs["procs"]["s1"].stderr
    # the same final step, and the final loss within 1 % of the uninterrupted run's (measured: identical)
    assert sessions[-1]["training"]["steps"] == one["training"]["steps"] == MAX_STEPS
    final_one, final_chain = one["training"]["final_loss"], sessions[-1]["training"]["final_loss"]
    print(f"\nfinal loss: one run {final_one}, 3 sessions {final_chain}; fixture wall {runs['wall_s']:.1f} s")
    assert final_chain == pytest.approx(final_one, rel=0.01)
    # every step logged by both has the same loss and learning rate: same batches, same schedule position
    chain = {**_metrics(runs["s1"]), **_metrics(runs["s2"]), **_metrics(runs["s3"])}
    assert sorted(chain) == [1, 10, 12, 13, 20, 24, 25, 30]
    for step, row in _metrics(runs["one"]).items():
        assert chain[step]["loss"] == pytest.approx(row["loss"], rel=1e-3), step
        assert chain[step]["learning_rate"] == pytest.approx(row["learning_rate"], rel=1e-6), step
        assert chain[step]["tokens"] == row["tokens"], step
    assert sessions[-1]["eval"]["n_items"] == one["eval"]["n_items"]


@pytest.mark.kernel
def test_each_checkpoint_records_how_to_resume_it(runs: dict[str, Any]) -> None:
    import orbax.checkpoint as ocp

    cfg = load_config(STOCK).config
    result = _result(runs["s2"])
    assert result["checkpoint"]["step"] == 24 and result["checkpoint"]["path"] == "checkpoint"
    manager = ocp.CheckpointManager(runs["s2"] / "checkpoint", options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        record = manager.metadata(24).custom_metadata["tunix_rt"]
    finally:
        manager.close()
    assert record["step"] == record["data_position"] == 24
    assert record["rng"] == {"seed": cfg.training.seed}
    assert record["config"]["training.max_steps"] == MAX_STEPS  # the command-line override is what ran
    assert record["config_fingerprint"] == result["checkpoint"]["config_fingerprint"]
    assert (runs["s2"] / "checkpoint" / "24" / "commit_success.txt").is_file()  # Orbax's finalization marker


@pytest.mark.kernel
def test_checkpoint_interval_is_honoured(runs: dict[str, Any]) -> None:
    # every 10 steps, 3 kept (the interval and max_to_keep do not change the fingerprint: s1 resumes fine)
    assert _steps_on_disk(runs["one"]) == ["10", "20", "30"]
    # interval 0, keep 1: only each session's last step
    assert [_steps_on_disk(runs[n]) for n in ("s1", "s2", "s3")] == [["12"], ["24"], ["30"]]


def _refused(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("train_jax: error: ") and expected in lines[-1], proc.stderr[-2000:]
    assert not any(line.startswith("train_jax:") for line in lines[:-1])


@pytest.mark.kernel
def test_incomplete_checkpoint_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(runs["s1"], cut)
    (cut / "checkpoint" / "12").rename(cut / "checkpoint" / f"12{TMP_SUFFIX}")  # killed before Orbax's rename
    proc = _train([*_base(STOCK, tmp_path / "next"), "--resume_from", str(cut)], {})
    _refused(proc, f"no complete checkpoint, only incomplete 12{TMP_SUFFIX}")
    assert not (tmp_path / "next").exists()


@pytest.mark.kernel
def test_newest_incomplete_step_is_skipped_or_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    from tunix_rt.training.checkpoints import ResumeError, find_resume_point

    one = tmp_path / "one"
    shutil.copytree(runs["one"], one)
    fp = _fingerprint_of(load_config(STOCK).config, _result(runs["one"]))
    (one / "checkpoint" / "30").rename(one / "checkpoint" / f"30{TMP_SUFFIX}")
    assert find_resume_point(str(one), fp).step == 20  # the newest complete step before the cut write
    (one / "checkpoint" / "20" / "commit_success.txt").unlink()  # finalized, but the marker was lost
    with pytest.raises(ResumeError, match=r"checkpoint 20 lacks Orbax's commit_success.txt .* resume from 10"):
        find_resume_point(str(one), fp)


def _fingerprint_of(cfg: Any, result: dict[str, Any]) -> Any:
    """The fingerprint train_jax.py computed for ``--max_steps 30 --dataset dev-reasoning-v2``."""
    from dataclasses import replace

    cfg = replace(cfg, data=replace(cfg.data, dataset=DATASET),
                  training=replace(cfg.training, max_steps=MAX_STEPS))
    fp = config_fingerprint(cfg, result["dataset"]["sha256"])
    assert fp.digest == result["checkpoint"]["config_fingerprint"]
    return fp


@pytest.mark.kernel
def test_checkpoint_of_another_config_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    proc = _train([*_base(STOCK, tmp_path / "next"), "--resume_from", str(runs["s1"]), "--seed", "1"], {})
    _refused(proc, "checkpoint 12 was trained with another config (training.seed: 0 there, 1 here)")
    assert not (tmp_path / "next").exists()


@pytest.mark.kernel
def test_output_holding_checkpoints_is_not_overwritten(runs: dict[str, Any], tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(runs["s1"], again)
    before = sorted(p.name for p in again.rglob("*"))
    proc = _train(_base(STOCK, again), {})
    _refused(proc, f"--output {again} already holds checkpoints")
    assert sorted(p.name for p in again.rglob("*")) == before


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("extra", "checkpoint", "expected"),
    [
        (["--smoke_steps", "2", "--stop_after_steps", "1"], {}, "--stop_after_steps needs a full run"),
        (["--resume_from", "elsewhere"], {"enabled": False}, "--resume_from needs checkpoint.enabled: true"),
        (["--deadline_unix", "1"], {"enabled": False}, "--deadline_unix needs checkpoint.enabled: true"),
        (["--stop_after_steps", "0"], {}, "--stop_after_steps: expected a positive number of steps, got 0"),
    ],
)
def test_session_flags_are_checked_before_anything_runs(tmp_path: Path, extra: list[str], checkpoint: dict,
                                                        expected: str) -> None:
    config = _variant(tmp_path / "c.yaml", **checkpoint)
    args = [*_base(config, tmp_path / "out"), *extra]
    if "--smoke_steps" in extra:
        i = args.index("--max_steps")
        del args[i:i + 2]
    _refused(_train(args, {}), expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.kernel
def test_wall_clock_deadline_ends_the_run_cleanly(tmp_path: Path) -> None:
    """A real deadline: 40 s margin, deadline 90 s after launch, a schedule far too long to finish. The run
    stops once less than the margin plus one step is left (after some steps, or at the start on a very busy
    machine), saves that step and exits 0 before the deadline (the margin covers the save; the extra 50 s the
    start-up and a first step that compiles)."""
    config = _variant(tmp_path / "margin.yaml", deadline_margin_s=40.0)
    out = tmp_path / "cut"
    deadline = time.time() + 90
    args = [*_base(config, out), "--deadline_unix", f"{deadline:.3f}"]
    args[args.index("--max_steps") + 1] = "100000"
    proc = _train(args, {})
    ended = time.time()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _result(out)
    session = result["session"]
    assert result["status"] == "cut_for_time" and result["error"] is None
    assert session["stop_reason"] == "deadline" and session["deadline_unix"] == pytest.approx(deadline, abs=1e-3)
    assert result["checkpoint"]["step"] == session["end_step"] == result["training"]["steps"] < 100000
    assert _steps_on_disk(out) == [str(session["end_step"])]
    assert ended < deadline, f"ended {ended - deadline:.1f} s after the deadline"
    print(f"\nwall-clock cut at step {session['end_step']}, {deadline - ended:.1f} s before the deadline")


def test_fingerprint_covers_the_trajectory_not_the_bookkeeping() -> None:
    from dataclasses import replace

    cfg = load_config(STOCK).config
    base = config_fingerprint(cfg, "a" * 64)
    same = [
        replace(cfg, name="renamed"),
        replace(cfg, checkpoint=replace(cfg.checkpoint, interval_steps=7, max_to_keep=3, deadline_margin_s=5.0)),
        replace(cfg, training=replace(cfg.training, log_every=3, smoke_steps=5)),
        replace(cfg, data=replace(cfg.data, eval_set="elsewhere.jsonl")),
        replace(cfg, mesh=replace(cfg.mesh, fsdp=4)),
        replace(cfg, generation=replace(cfg.generation, max_new_tokens=8)),
    ]
    assert {config_fingerprint(c, "a" * 64).digest for c in same} == {base.digest}
    other = [
        replace(cfg, training=replace(cfg.training, learning_rate=0.001)),
        replace(cfg, training=replace(cfg.training, max_steps=10)),
        replace(cfg, training=replace(cfg.training, seed=1)),
        replace(cfg, data=replace(cfg.data, seq_len=256)),
        replace(cfg, lora=replace(cfg.lora, enabled=True)),
        replace(cfg, model=replace(cfg.model, dtype="bfloat16")),
    ]
    digests = [config_fingerprint(c, "a" * 64).digest for c in other]
    assert base.digest not in digests and len(set(digests)) == len(digests)
    assert config_fingerprint(cfg, "b" * 64).digest != base.digest  # other data under the same key
    assert base.fields["training.learning_rate"] == cfg.training.learning_rate


@pytest.mark.kernel
def test_kernel_notebook_resumes_an_attached_session_and_stops_for_time(runs: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    """The notebook finds the previous session's output under the input folder (as Kaggle mounts a kernel
    source), passes --resume_from and the deadline from its baked session_timeout_s; with a deadline already
    inside the margin it trains nothing, saves the restored step into its own output and ends cut_for_time."""
    from tunix_rt import paths
    from tunix_rt.bundle import build_payload, payload_files, render_notebook
    from tunix_rt.runners.local import kernel_env, papermill_command

    raw = yaml.safe_load(STOCK.read_text(encoding="utf-8"))
    raw["training"]["max_steps"] = MAX_STEPS  # the schedule of the attached sessions
    raw["checkpoint"]["deadline_margin_s"] = 3600.0
    config = tmp_path / "sft_tiny_30.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    files = payload_files(STOCK, paths.training_dir() / "evalsets" / "eval_v1.jsonl")
    files["training/configs/sft_tiny_30.yaml"] = config
    params = {"mode": "full", "config": "configs/sft_tiny_30.yaml", "dataset": DATASET,
              "eval_set": "evalsets/eval_v1.jsonl", "run_version": "session3", "session_timeout_s": 3601}
    notebook = tmp_path / "kaggle_submission.ipynb"
    notebook.write_text(render_notebook(params, build_payload(files)), encoding="utf-8")
    inputs = tmp_path / "input"
    shutil.copytree(runs["s2"], inputs / "tunix-rt-session2" / "output")  # /kaggle/input/<slug>/output
    work = tmp_path / "working"
    work.mkdir()
    proc = subprocess.run(papermill_command(notebook, work / "__notebook__.ipynb", work), cwd=work,
                          env=kernel_env(inputs), capture_output=True, text=True, timeout=600, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    kernel_run = json.loads((work / "output" / "kernel_run.json").read_text(encoding="utf-8"))
    assert kernel_run["status"] == "cut_for_time" and kernel_run["session_timeout_s"] == 3601
    assert kernel_run["resumed_from"] == "tunix-rt-session2/output"
    assert kernel_run["cells_completed"][-1] == "7 Submission Summary"
    assert "5 Generate Predictions" not in kernel_run["cells_completed"]
    result = _result(work / "output")
    assert result["session"]["resumed_from"]["step"] == 24
    assert (result["session"]["start_step"], result["session"]["end_step"]) == (24, 24)
    assert result["session"]["stop_reason"] == "deadline" and "--deadline_unix" in result["command"]
    assert _steps_on_disk(work / "output") == ["24"]  # the next session resumes from this kernel's output
    assert "Session cut for time at step 24" in log and "✅" not in log


@pytest.mark.kernel
@pytest.mark.slow
def test_lora_sessions_resume_the_adapters(tmp_path: Path) -> None:
    """The submission path: safetensors weights + qwix LoRA in bf16; the checkpoint holds only the adapters
    (and their optimizer state); a resumed session reloads the base weights and continues the adapters."""
    from test_train import _submission_like_config, _write_hf_gemma3

    _write_hf_gemma3(tmp_path / "input" / "gemma-3" / "tiny-gemma3")
    config = _submission_like_config(tmp_path / "submission_tiny.yaml")
    base = ["--config", str(config), "--device", "cpu", "--input_dir", str(tmp_path / "input"), "--max_steps", "6"]
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    procs = [_train([*base, "--output", str(tmp_path / "one")], env),
             _train([*base, "--output", str(tmp_path / "s1"), "--stop_after_steps", "3"], env),
             _train([*base, "--output", str(tmp_path / "s2"), "--resume_from", str(tmp_path / "s1")], env)]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, s1, s2 = (_result(tmp_path / n) for n in ("one", "s1", "s2"))
    assert (s1["status"], s2["status"], s2["session"]["start_step"]) == ("cut_for_time", "complete", 3)
    assert s2["training"]["final_loss"] == pytest.approx(one["training"]["final_loss"], rel=0.01)
    assert s1["model"]["finetune"] == "lora"
    # Orbax's tree metadata of the saved params: only adapter leaves (w_lora_a / w_lora_b)
    meta = json.loads((tmp_path / "s1" / "checkpoint" / "3" / "model_params" / "_METADATA").read_text("utf-8"))
    keys = list(meta["tree_metadata"])
    assert keys and all("_lora_" in key for key in keys), keys[:5]
