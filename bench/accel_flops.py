"""What model FLOPs utilisation (MFU) is counted from: training FLOPs per token and the device's bf16 peak.

Pure arithmetic, no JAX, so the formulas are unit-tested on their own (tests/test_accelerator_bench.py).

Training FLOPs per token (a multiply-add = 2 FLOPs; forward = 2 FLOPs per weight, backward = 4):

- **full fine-tuning**: ``6 × N`` with N = every parameter. Gemma 3 ties its embedding table to the output
  head, so the table is counted once, as the head's matmul (the input lookup is a gather, 0 FLOPs).
- **LoRA**: ``4 × N_base + 6 × N_lora``. The frozen weights still run forward (2 × N_base) and pass the
  activation gradient backward (2 × N_base), but compute no weight gradient (the missing 2 × N_base); the
  adapters cost what full training costs (6 × N_lora).
- **attention scores** (not in the two counts above, reported beside them): Tunix's Gemma 3 computes the full
  L × L score matrix in every layer (local layers mask it afterwards), so per token ``4 × L × H × D`` FLOPs
  forward per layer (QKᵀ and PV, H heads of width D) and three times that for a training step (the backward of
  a weightless op is two forward's worth in both modes): ``12 × layers × L × H × D``.

MFU = FLOPs per token × tokens per second / peak FLOP/s, against two peaks: the bf16 matmul rate the bench
measures on the device itself (``bench/accel_device.py``), and the vendor's dense bf16 figure below.
"""

from __future__ import annotations

# Dense (no sparsity) bf16 matrix throughput in TFLOP/s by JAX ``device_kind``, from the vendors' datasheets.
# Leads, not measurements: the bench also measures a large bf16 matmul on the device and reports both.
SPEC_BF16_TFLOPS: dict[str, float] = {
    "NVIDIA H100 80GB HBM3": 989.4,  # H100 SXM5 (NVIDIA H100 datasheet: 1,979 with sparsity)
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.4,  # same Hopper die as the H100 SXM
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA L4": 121.0,  # 242 with sparsity
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,  # TPU v5e (Cloud TPU v5e docs: 197 bf16 TFLOP/s per chip)
    "TPU v5": 459.0,  # TPU v5p
    "TPU v6 lite": 918.0,  # Trillium (v6e)
}
# Kaggle's T4 ("Tesla T4") has no bf16 tensor cores (65 TFLOP/s is fp16): bf16 is emulated, so no bf16 peak.


def spec_peak_tflops(device_kind: str) -> float | None:
    """The datasheet dense bf16 peak for a JAX device kind; None when unknown (CPU, T4, new chips)."""
    return SPEC_BF16_TFLOPS.get(device_kind)


def train_flops_per_token(mode: str, total_params: int, trainable_params: int) -> int:
    """Model FLOPs of one training step per token: 6·N (full) or 4·N_base + 6·N_lora (LoRA)."""
    if mode == "full":
        return 6 * total_params
    if mode == "lora":
        base = total_params - trainable_params
        return 4 * base + 6 * trainable_params
    raise ValueError(f"mode must be 'full' or 'lora', got {mode!r}")


def attention_flops_per_token(num_layers: int, seq_len: int, num_heads: int, head_dim: int) -> int:
    """Attention-score FLOPs of one training step per token: 12 · layers · L · H · D (dense L×L scores)."""
    return 12 * num_layers * seq_len * num_heads * head_dim


def mfu(flops_per_token: int, tokens_per_second: float | None, peak_tflops: float | None) -> float | None:
    """Achieved FLOP/s over the peak (0-1); None when either figure is missing."""
    if tokens_per_second is None or not peak_tflops:
        return None
    return flops_per_token * tokens_per_second / (peak_tflops * 1e12)
