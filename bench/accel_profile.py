"""``--profile``: capture one training step with jax.profiler and say where its time goes.

After the case's timed run, a short extra run (3 steps, same batch, same ``training.sft.run_sft``) wraps the
batch iterator: before handing over step 3's batch it waits for the device to finish step 2 and starts the
trace; before step 4's (or the end) it waits for step 3 and stops it. The window therefore holds exactly one
step: the batch being produced (data loading), Tunix putting it on the device, the dispatch, and the device's
execution. The run's compile is served by the worker's persistent compilation cache (the timed run wrote it).

The summary classifies the step's XLA operations as matrix multiplies or not using the optimized HLO that XLA
dumps for the train step (``XLA_FLAGS=--xla_dump_to``, set by ``bench/accelerator.py`` for this worker): an
operation is a matmul when it is a dot/convolution, a cuBLAS/cuDNN GEMM custom call, or a fusion whose fused
computation contains a dot. Operations the dump does not name (library kernels) fall back to their names
(gemm, xmma, nvjet, cutlass, …). Host↔device copies are the device's memcpy events. The trace itself is copied
next to the result (``accelerator_profile.xplane.pb``; open it with xprof / TensorBoard's profile plugin).
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TRACE_NAME = "accelerator_profile.xplane.pb"
PROFILED_STEP = 2  # 0-based: steps 0 and 1 run first (compile-cache load, warm-up), step 2 is traced
_MATMUL_WORDS = re.compile(r"gemm|matmul|xmma|nvjet|cutlass|cublas|cudnn|wgmma|(^|[_.])dot([_.]|$)|conv", re.I)
_HOST_SKIP = ("ThunkExecutor", "ThreadpoolListener", "end: ")  # CPU runtime bookkeeping, not operations


def _norm(name: str) -> str:
    """HLO instruction and kernel names compare equal after this (XLA names kernels fusion.3 → fusion_3; a
    trace may give an operation's long form, ``%fusion.3 = bf16[…] fusion(…)``, of which the name is kept)."""
    head = name.strip().split(" ", 1)[0] if name.strip() else name
    return head.lstrip("%").replace(".", "_").replace("-", "_")


def matmul_ops_from_hlo(text: str) -> tuple[set[str], set[str]]:
    """(names of matmul instructions, names of all instructions) in an optimized HLO module's text."""
    computations: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            computations[current] = []
        elif current is not None and line.startswith("  "):
            computations[current].append(line.strip())

    def has_dot(comp: str, seen: set[str]) -> bool:
        if comp in seen:
            return False
        seen.add(comp)
        for inst in computations.get(comp, []):
            if re.search(r"\s(dot|convolution)\(", inst) or re.search(r'custom_call_target="[^"]*(gemm|matmul|conv)',
                                                                     inst, re.I):
                return True
            for called in re.findall(r"calls=%?([\w.\-]+)", inst):
                if has_dot(called, seen):
                    return True
        return False

    matmul, every = set(), set()
    for insts in computations.values():
        for inst in insts:
            m = re.match(r"^(?:ROOT\s+)?%?([\w.\-]+)\s*=", inst)
            if not m:
                continue
            name = _norm(m.group(1))
            every.add(name)
            direct = re.search(r"\s(dot|convolution)\(", inst) or re.search(
                r'custom_call_target="[^"]*(gemm|matmul|conv)', inst, re.I)
            called = re.findall(r"calls=%?([\w.\-]+)", inst)
            if direct or any(has_dot(c, set()) for c in called):
                matmul.add(name)
    return matmul, every


def _latest_train_step_hlo(dump_dir: Path) -> str | None:
    files = sorted(dump_dir.glob("*_train_step*after_optimizations.txt"), key=lambda p: p.stat().st_mtime)
    return files[-1].read_text(encoding="utf-8", errors="replace") if files else None


def summarise(xplane: Path, hlo_text: str | None, window_s: float, data_s: float) -> dict[str, Any]:
    """Where the traced step's time went: op time by kind, matmul share, copies, host-side phases."""
    import jax

    matmul_names, hlo_names = matmul_ops_from_hlo(hlo_text) if hlo_text else (set(), set())
    profile = jax.profiler.ProfileData.from_file(str(xplane))
    device_planes = [p for p in profile.planes if p.name.startswith(("/device:GPU", "/device:TPU"))]
    ops: dict[str, float] = defaultdict(float)
    copies: dict[str, float] = defaultdict(float)
    host: dict[str, float] = defaultdict(float)
    source = "none"
    for plane in device_planes:
        lines = list(plane.lines)
        op_lines = [ln for ln in lines if ln.name == "XLA Ops"] or [ln for ln in lines if "stream" in ln.name.lower()]
        source = f"{plane.name} ({', '.join(sorted({ln.name for ln in op_lines}))})"
        for line in op_lines:
            for ev in line.events:
                if "memcpy" in ev.name.lower():
                    continue
                ops[ev.name] += ev.duration_ns / 1e9
        for line in lines:
            if "stream" not in line.name.lower() and line.name != "XLA Ops":
                continue
            for ev in line.events:
                low = ev.name.lower()
                if "memcpy" in low:
                    kind = "h2d" if ("h2d" in low or "htod" in low) else "d2h" if ("d2h" in low or "dtoh" in low) \
                        else "d2d"
                    copies[kind] += ev.duration_ns / 1e9
    for plane in profile.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if line.name == "python":
                for ev in line.events:
                    if ev.name.endswith((" shard_input", " device_put")):
                        host["shard_input_s"] += ev.duration_ns / 1e9
            elif not device_planes and line.name.startswith("tf_XLA"):
                source = "/host:CPU XLA thunks (the CPU backend runs operations on host threads)"
                for ev in line.events:
                    if not ev.name.startswith(_HOST_SKIP):
                        ops[ev.name] += ev.duration_ns / 1e9

    def is_matmul(name: str) -> bool:
        key = _norm(name)
        return key in matmul_names if key in hlo_names else bool(_MATMUL_WORDS.search(name))

    op_s = sum(ops.values())
    matmul_s = sum(t for n, t in ops.items() if is_matmul(n))
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:12]
    return {
        "trace_file": TRACE_NAME,
        "window_s": window_s,
        "op_source": source,
        "op_time_s": op_s,
        "matmul_s": matmul_s,
        "matmul_share": matmul_s / op_s if op_s else None,
        "classified_by": "optimized HLO of the train step" if hlo_text else "operation names only",
        "host_to_device_s": copies.get("h2d", 0.0) if device_planes else None,
        "device_to_host_s": copies.get("d2h", 0.0) if device_planes else None,
        "device_to_device_s": copies.get("d2d", 0.0) if device_planes else None,
        "data_loading_s": data_s,
        "shard_input_s": host.get("shard_input_s"),
        "top_ops": [{"name": n, "s": t, "matmul": is_matmul(n)} for n, t in top],
    }


def profile_case(worker: Any, batch: int, out_dir: Path) -> dict[str, Any]:
    """Train 3 steps at ``batch`` with step 3 traced; copy the trace next to the result and summarise it."""
    import jax
    from flax import nnx

    trace_dir = worker.tmp / "trace"
    clock: dict[str, float] = {"data_s": 0.0, "window_s": 0.0}

    def wrap(inner: Iterator[Any], model: Any) -> Iterator[Any]:
        started = 0.0
        for i in itertools.count():
            if i == PROFILED_STEP:
                jax.block_until_ready(nnx.state(model))  # step 2 done: the window starts clean
                jax.profiler.start_trace(str(trace_dir))
                started = time.perf_counter()
            elif i > PROFILED_STEP:
                break  # the trainer asks for one more batch after the traced step: stop there
            t0 = time.perf_counter()
            item = next(inner, None)
            if item is None:
                break
            if i == PROFILED_STEP:
                clock["data_s"] = time.perf_counter() - t0
            yield item
        if started:
            jax.block_until_ready(nnx.state(model))
            clock["window_s"] = time.perf_counter() - started
            jax.profiler.stop_trace()

    worker.train(batch, PROFILED_STEP + 1, wrap)
    traces = sorted(trace_dir.glob("**/*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not traces:
        return {"error": "jax.profiler wrote no trace", "trace_file": None}
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(traces[-1], out_dir / TRACE_NAME)
    dump = worker.case.hlo_dump_dir
    try:
        return summarise(traces[-1], _latest_train_step_hlo(dump) if dump else None, clock["window_s"],
                         clock["data_s"])
    except Exception as exc:  # a trace layout this parser does not know must not lose the measured case
        return {"trace_file": TRACE_NAME, "window_s": clock["window_s"], "error": f"summary failed: {exc}"}
