"""The device the accelerator bench runs on: what JAX sees, and its measured bf16 matmul peak.

(``--tiny`` trains in float32, sft_tiny.yaml's dtype, so there the peak is a float32 matmul's.)

Runs inside a worker process (``bench/accelerator.py --worker device``): the parent never initialises JAX, so
no process but the measuring one holds the accelerator's memory.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from accel_flops import spec_peak_tflops


def memory_stats(device: Any) -> dict[str, int] | None:
    """The device allocator's counters (bytes_limit, bytes_in_use, peak_bytes_in_use); None on CPU."""
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
    return dict(stats) if stats else None


def describe_devices() -> dict[str, Any]:
    """Backend, device kinds and count, and the first device's memory limit (JAX's own view)."""
    import jax

    devices = jax.devices()
    first = devices[0]
    stats = memory_stats(first) or {}
    return {
        "backend": jax.default_backend(),
        "device_kind": first.device_kind,
        "device_count": len(devices),
        "device_memory_limit_bytes": stats.get("bytes_limit"),
        "jax": jax.__version__,
    }


def matmul_peak(n: int, repeats: int, dtype: str = "bfloat16") -> dict[str, Any]:
    """Median TFLOP/s of an n×n×n matmul (random normal operands, fp32 accumulation) on device 0.

    Warm-up runs first (compile, autotuning, clocks), then ``repeats`` timed runs, each synchronised.
    This is the ceiling MFU is also reported against: the rate this device reaches on a plain large GEMM.
    """
    import jax
    import jax.numpy as jnp

    kind = jnp.dtype(dtype)
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), dtype=jnp.float32).astype(kind)
    b = jax.random.normal(kb, (n, n), dtype=jnp.float32).astype(kind)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32).astype(kind))
    for _ in range(3):
        matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    median_s = statistics.median(times)
    return {"n": n, "dtype": dtype, "repeats": repeats, "median_s": median_s, "tflops": 2 * n**3 / median_s / 1e12}


def device_report(matmul_n: int, repeats: int, dtype: str = "bfloat16") -> dict[str, Any]:
    """Device description plus the measured matmul peak (in the training dtype) and the datasheet bf16 peak."""
    info = describe_devices()
    peak = matmul_peak(matmul_n, repeats, dtype)
    info["matmul_peak"] = peak
    info["peak_tflops_measured"] = peak["tflops"]
    info["peak_tflops_spec"] = spec_peak_tflops(info["device_kind"]) if dtype == "bfloat16" else None
    return info
