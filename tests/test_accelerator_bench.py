"""bench/accelerator.py and its helpers: the MFU formulas, the batch-size search, the one-command device check,
and the --tiny run on CPU (the same code as on a GPU) writing a complete accelerator.json."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))  # the bench scripts import their sibling modules by name
accel_flops = importlib.import_module("accel_flops")
accel_batch = importlib.import_module("accel_batch")
accelerator = importlib.import_module("accelerator")
accel_profile = importlib.import_module("accel_profile")

GB = 10**9


def test_flops_per_token_full_and_lora() -> None:
    assert accel_flops.train_flops_per_token("full", 1_000, 1_000) == 6_000
    # LoRA: 1,000 frozen weights run forward and pass gradients back (4 each); 10 adapter weights train (6 each)
    assert accel_flops.train_flops_per_token("lora", 1_010, 10) == 4 * 1_000 + 6 * 10
    assert accel_flops.attention_flops_per_token(26, 1024, 4, 256) == 12 * 26 * 1024 * 4 * 256
    with pytest.raises(ValueError, match="mode"):
        accel_flops.train_flops_per_token("qlora", 1, 1)


def test_mfu_against_a_named_peak() -> None:
    # 6 GFLOP per token at 50k tokens/s = 300 TFLOP/s: 30 % of a 1,000 TFLOP/s peak
    assert accel_flops.mfu(6 * 10**9, 50_000, 1000.0) == pytest.approx(0.30)
    assert accel_flops.mfu(6 * 10**9, None, 1000.0) is None
    assert accel_flops.mfu(6 * 10**9, 50_000, None) is None
    assert accel_flops.spec_peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert accel_flops.spec_peak_tflops("cpu") is None


class FakeDevice:
    """Trains nothing: memory = base + rows × per_row (+ extra above `bend` rows); OOM above the limit."""

    def __init__(self, base: float, per_row: float, limit: float, bend: int = 10**9, extra: float = 0.0) -> None:
        self.base, self.per_row, self.limit, self.bend, self.extra = base, per_row, limit, bend, extra
        self.tried: list[int] = []

    def __call__(self, batch: int) -> accel_batch.Try:
        self.tried.append(batch)
        peak = self.base + batch * self.per_row + (self.extra if batch > self.bend else 0.0)
        if peak > self.limit:
            return accel_batch.Try(batch=batch, oom=True, wall_s=60.0)
        return accel_batch.Try(batch=batch, oom=False, wall_s=60.0, compile_s=50.0, peak_bytes=int(peak),
                               base_bytes=int(self.base), figures={"batch_size": batch})


def test_search_jumps_to_the_largest_doubling_that_fits() -> None:
    device = FakeDevice(base=10 * GB, per_row=3 * GB, limit=80 * GB)  # fits up to 22 rows (95 % of 80 GB)
    best, tries = accel_batch.search(device, 4, multiple=1, max_batch=256, limit_bytes=80 * GB)
    assert best is not None and best.batch == 16
    assert device.tried == [4, 16]  # one estimate, no crawl through 8


def test_search_backs_off_after_an_out_of_memory_try() -> None:
    # linear until 16 rows, then 40 GB more (say a different fusion): the estimate from 8 rows says 64 fits
    device = FakeDevice(base=2 * GB, per_row=1 * GB, limit=80 * GB, bend=16, extra=40 * GB)
    best, tries = accel_batch.search(device, 8, multiple=1, max_batch=256, limit_bytes=80 * GB)
    # 64 runs out of memory → back to doubling 8: 16 fits, 32 fits (74 GB), 64 is known not to
    assert device.tried == [8, 64, 16, 32]
    assert best is not None and best.batch == 32 and tries[1].oom


def test_search_does_not_retry_a_batch_that_ran_out_of_memory() -> None:
    device = FakeDevice(base=2 * GB, per_row=1 * GB, limit=80 * GB, bend=8, extra=75 * GB)  # only <= 8 fit
    best, _ = accel_batch.search(device, 8, multiple=1, max_batch=256, limit_bytes=80 * GB)
    assert device.tried == [8, 64, 16]
    assert best is not None and best.batch == 8


def test_search_halves_until_the_first_batch_fits() -> None:
    device = FakeDevice(base=10 * GB, per_row=15 * GB, limit=80 * GB)  # only 4 rows fit
    best, _ = accel_batch.search(device, 16, multiple=1, max_batch=256, limit_bytes=80 * GB)
    assert device.tried == [16, 8, 4]
    assert best is not None and best.batch == 4


def test_search_without_a_memory_limit_doubles_to_the_cap_in_fsdp_multiples() -> None:
    device = FakeDevice(base=0, per_row=1, limit=float("inf"))
    best, _ = accel_batch.search(device, 3, multiple=8, max_batch=40, limit_bytes=None)
    assert device.tried == [8, 16, 32]  # multiples of the 8-way fsdp axis, capped at 40 → 32
    assert best is not None and best.batch == 32


def test_search_stops_growing_before_the_deadline() -> None:
    device = FakeDevice(base=10 * GB, per_row=1 * GB, limit=80 * GB)
    now = [1000.0]
    best, _ = accel_batch.search(device, 4, multiple=1, max_batch=256, limit_bytes=80 * GB,
                                 deadline=1100.0, clock=lambda: now[0])
    assert device.tried == [4]  # a next try (compile 50 s + longer steps) would end after the deadline
    assert best is not None and best.batch == 4


GPU_LIKE_HLO = """\
HloModule jit__train_step, is_scheduled=true

%gemm_fusion_dot.3_computation (p0: bf16[8,16], p1: bf16[16,4]) -> bf16[8,4] {
  %p0 = bf16[8,16]{1,0} parameter(0)
  %p1 = bf16[16,4]{1,0} parameter(1)
  ROOT %dot.3 = bf16[8,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_add (p0.1: bf16[8,4]) -> bf16[8,4] {
  %p0.1 = bf16[8,4]{1,0} parameter(0)
  ROOT %add.1 = bf16[8,4]{1,0} add(%p0.1, %p0.1)
}

ENTRY %main.9 (a: bf16[8,16], b: bf16[16,4]) -> bf16[8,4] {
  %a = bf16[8,16]{1,0} parameter(0)
  %b = bf16[16,4]{1,0} parameter(1)
  %gemm_fusion_dot.3 = bf16[8,4]{1,0} fusion(%a, %b), kind=kCustom, calls=%gemm_fusion_dot.3_computation
  %custom-call.7 = (bf16[8,4]{1,0}, s8[0]{0}) custom-call(%a, %b), custom_call_target="__cublas$gemm"
  ROOT %loop_add_fusion = bf16[8,4]{1,0} fusion(%gemm_fusion_dot.3), kind=kLoop, calls=%fused_add
}
"""


def test_profile_classifies_matmuls_from_the_optimized_hlo() -> None:
    matmul, every = accel_profile.matmul_ops_from_hlo(GPU_LIKE_HLO)
    assert {"gemm_fusion_dot_3", "custom_call_7"} <= matmul  # a fusion calling a dot; a cuBLAS custom call
    assert "loop_add_fusion" in every and "loop_add_fusion" not in matmul
    # trace names: the op's name (dots → underscores), its long form, or a library kernel the HLO never names
    assert accel_profile._norm("%gemm_fusion_dot.3 = bf16[8,4] fusion(...)") in matmul
    assert accel_profile._norm("custom-call.7") in matmul


def test_cases_flag_and_command_record() -> None:
    assert accelerator.parse_cases("full:1024, lora:512") == [("full", 1024), ("lora", 512)]
    for bad in ("full", "full:0", "qlora:512", ""):
        with pytest.raises(ValueError, match="--cases"):
            accelerator.parse_cases(bad)
    # the result names the output folder, never the host path it lives under
    assert accelerator._command(["--tiny", "--out", "/home/someone/x/results"]) == \
        "python bench/accelerator.py --tiny --out results"


def test_bad_flags_exit_2_without_starting_jax(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "accelerator.py"), "--cases", "full:abc", "--out",
                           str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "--cases" in proc.stderr
    assert not (tmp_path / "accelerator.json").exists()


def test_device_check_needs_an_outdir_and_wheels(tmp_path: Path) -> None:
    script = BENCH / "device_check.sh"
    usage = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr
    # a checkout without .whl/ on a GPU host: one line saying how to fill it, exit 2, nothing run
    (tmp_path / "bench").mkdir()
    shutil.copy(script, tmp_path / "bench" / "device_check.sh")
    env = {k: v for k, v in os.environ.items() if k != "TUNIX_RT_DEVICE_CHECK_CPU"}
    proc = subprocess.run([str(tmp_path / "bench" / "device_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "prepare_device_wheels.sh" in proc.stderr


CASE_FIGURES = ("batch_size", "steps", "tokens_per_second", "step_time_s", "first_step_s", "compile_s",
                "first_loss", "last_loss", "peak_memory_bytes", "params_total", "params_trainable",
                "flops_per_token", "attention_flops_per_token", "achieved_tflops", "mfu_vs_measured_peak")


def _check_complete(result_dir: Path, modes: set[str]) -> dict:
    text = (result_dir / "accelerator.json").read_text(encoding="utf-8")
    assert str(result_dir) not in text  # portable: no host path in the result
    result = json.loads(text)
    assert result["complete"] is True
    device = result["device"]
    assert device["backend"] == "cpu" and device["device_kind"] and device["device_count"] >= 1
    assert device["peak_tflops_measured"] > 0 and device["matmul_peak"]["n"] > 0
    assert {c["mode"] for c in result["cases"]} == modes
    for case in result["cases"]:
        assert case["status"] == "ok", case
        for key in CASE_FIGURES:
            assert isinstance(case[key], int | float) and case[key] > 0, (case["mode"], key, case.get(key))
        assert case["model"]["dtype"] == "float32" and case["peak_memory_source"]  # sft_tiny.yaml's dtype
        assert case["tokens_per_second"] == pytest.approx(case["batch_size"] * case["seq_len"] / case["step_time_s"])
    return result


@pytest.mark.kernel
def test_tiny_run_writes_a_complete_result(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "accelerator.py"), "--tiny", "--profile", "--out",
                           str(tmp_path)], capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _check_complete(tmp_path, {"full", "lora"})
    full = next(c for c in result["cases"] if c["mode"] == "full")
    lora = next(c for c in result["cases"] if c["mode"] == "lora")
    assert full["params_trainable"] == full["params_total"]
    assert 0 < lora["params_trainable"] < lora["params_total"]  # only the rank-16 adapters train
    assert lora["frozen_fwd_bwd"]["step_time_s"] > 0 and lora["lora_step_over_frozen_fwd_bwd"] > 0
    profile = full["profile"]
    assert (tmp_path / profile["trace_file"]).is_file()
    assert profile["classified_by"] == "optimized HLO of the train step"
    assert 0 < profile["matmul_share"] < 1 and profile["window_s"] > 0
    assert "accelerator:" in proc.stderr and "tokens/s" in proc.stdout


@pytest.mark.kernel
def test_device_check_rehearses_on_cpu(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable, TUNIX_RT_DEVICE_CHECK_CPU="1")
    proc = subprocess.run([str(BENCH / "device_check.sh"), str(tmp_path), "--cases", "full:64", "--steps", "3"],
                          env=env, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "JAX backend cpu" in proc.stderr
    _check_complete(tmp_path, {"full"})
