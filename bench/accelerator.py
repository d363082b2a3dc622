"""Training speed at Gemma 3 1B size on an accelerator: tokens/s, step time, MFU, peak memory, compile time.

    python bench/accelerator.py [--cases full:1024,full:512,lora:1024,lora:512] [--steps 10] [--budget-s S]
                                [--profile [MODE:SEQ]] [--out DIR]
    python bench/accelerator.py --tiny      # the same code on sft_tiny.yaml's model (float32), on CPU

Each case (full fine-tuning or LoRA × a sequence length) trains the Gemma 3 1B architecture from a random
bf16 init (``--tiny``: sft_tiny.yaml's 362k-parameter model in its own float32) with the project's own
training code (``training.sft.run_sft``: Tunix PeftTrainer), for a fixed number of steps, at the largest batch
that fits the device's memory (``accel_batch``: doubling, backed off on out-of-memory). See ``accel_train``
for the model and data, ``accel_flops`` for the MFU formulas and peaks, ``accel_device`` for the measured
matmul peak, ``accel_profile`` for ``--profile``.

Every case and the device measurement run in their own worker process (this script with ``--worker``), so a
case's peak-memory counter and an out-of-memory failure stay its own, and this process never holds the
device. ``--budget-s`` bounds the whole run: a case gets a fair share of the time left, grows its batch only
while the next try fits that share, and a case that cannot start in time is recorded as skipped.

Writes ``accelerator.json`` into ``--out`` (default bench/results/). Exit 0 when every case measured, 1 when
one did not (the JSON still records what was measured), 2 on bad flags. Runs from a checkout without the
package installed: the checkout's ``training/`` folder is imported as the package ``training``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:  # `training` as a package, from a checkout (no pip install needed)
    sys.path.insert(1, str(REPO))

from accel_flops import attention_flops_per_token, mfu, train_flops_per_token  # noqa: E402
from machine import out_arg, table, write_result  # noqa: E402

MODES = ("full", "lora")
DEFAULT_CASES = "full:1024,full:512,lora:1024,lora:512"  # the goal case (full, 1024) first
TINY_CASES = "full:256,lora:128"  # CPU: one case per mode keeps the run under a minute
MIN_CASE_S = 20  # a case that cannot have this much of the budget is skipped, not started
FORMULAS = {
    "full": "flops_per_token = 6 * params_total (tied embedding counted once, as the output head)",
    "lora": "flops_per_token = 4 * (params_total - params_trainable) + 6 * params_trainable",
    "attention": "attention_flops_per_token = 12 * layers * seq_len * heads * head_dim (dense L x L scores)",
    "mfu": "flops_per_token * tokens_per_second / peak; peaks: the measured bf16 matmul and the datasheet",
    "compile_s": "JAX's own trace + lower + compile durations during the training call (the train step)",
    "step_time_s": "mean of steps 3..N from run_sft's per-step metrics.jsonl timestamps; tokens/s = batch*seq/it",
}


def parse_cases(text: str) -> list[tuple[str, int]]:
    """``full:1024,lora:512`` → [("full", 1024), ("lora", 512)]; ValueError naming the bad item."""
    cases = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        mode, _, seq = item.partition(":")
        if mode not in MODES or not seq.isdigit() or int(seq) <= 0:
            raise ValueError(f"--cases: {item!r} is not MODE:SEQ (MODE full or lora, SEQ a positive length)")
        cases.append((mode, int(seq)))
    if not cases:
        raise ValueError("--cases: no case given")
    return cases


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true",
                   help="sft_tiny.yaml's model (float32) on CPU: 5 steps, batch 2, short sequences (the test's run)")
    p.add_argument("--cases", help=f"MODE:SEQ list, in run order (default {DEFAULT_CASES}; --tiny {TINY_CASES})")
    p.add_argument("--steps", type=int, help="training steps per try (default 10; --tiny 5)")
    p.add_argument("--max-batch", type=int, help="largest batch the search tries (default 256; --tiny 2)")
    p.add_argument("--start-batch", type=int, default=0,
                   help="first batch of the first case (default: estimated from the device's memory)")
    p.add_argument("--matmul-n", type=int, help="size of the peak matmul (default 8192 bf16; --tiny 512 float32)")
    p.add_argument("--budget-s", type=float, help="wall-clock budget of the whole run in seconds (default none)")
    p.add_argument("--profile", nargs="?", const="auto", metavar="MODE:SEQ",
                   help="capture one training step of this case with jax.profiler and summarise it "
                        "(default case: full at the longest sequence)")
    p.add_argument("--no-frozen-reference", action="store_true",
                   help="skip timing the frozen model's forward+backward next to the LoRA cases")
    out_arg(p)
    p.add_argument("--worker", choices=["device", "case"], help=argparse.SUPPRESS)
    p.add_argument("--worker-spec", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------- worker side (imports JAX)

def _worker(args: argparse.Namespace) -> int:
    spec = json.loads(args.worker_spec)
    if args.worker == "device":
        from accel_device import device_report

        result = device_report(spec["matmul_n"], spec["repeats"], spec["dtype"])
    else:
        from accel_train import Case, run_case

        profile_dir = spec.pop("profile_dir")
        dump = None
        if profile_dir:  # the profile's summary reads the train step's optimized HLO (before JAX starts)
            dump = Path(tempfile.mkdtemp(prefix="tunix-rt-accel-hlo-"))
            os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump} "
                                       "--xla_dump_hlo_module_re=.*_train_step.* --xla_dump_hlo_as_text=true "
                                       "--xla_dump_hlo_as_proto=false").strip()
        case = Case(**spec, profile_dir=Path(profile_dir) if profile_dir else None, hlo_dump_dir=dump)
        result = run_case(case, emit=lambda partial: _write_json(args.worker_out, {**partial, "partial": True}))
    _write_json(args.worker_out, result)
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- parent side (never imports JAX)

def _worker_env(tiny: bool, cache_dir: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # JAX takes 75 % of GPU memory by default; the batch search should be able to fill nearly all of it.
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.90")
    if tiny:
        env["JAX_PLATFORMS"] = "cpu"
    # A fresh compilation cache for this run only (compile figures stay cold; the profile's re-run of a case
    # and the later cases' model init are served from it). Overrides any cache the environment names.
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _run_worker(kind: str, spec: dict[str, Any], tiny: bool, timeout: float | None,
                cache_dir: str) -> dict[str, Any]:
    """Run one worker process; its result, or {"status": "failed"|"timed out", "error": …}."""
    with tempfile.TemporaryDirectory(prefix="tunix-rt-accel-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--worker-spec",
               json.dumps(spec), "--worker-out", str(out)]
        started = time.time()
        try:
            # TMPDIR: whatever the worker leaves in temp folders goes when this folder does
            env = {**_worker_env(tiny, cache_dir), "TMPDIR": tmp}
            proc = subprocess.run(cmd, env=env, timeout=timeout, check=False,
                                  stdout=sys.stderr, stderr=sys.stderr)
        except subprocess.TimeoutExpired:
            stopped = f"killed after {timeout:.0f} s (budget)"
            if out.is_file():  # the figures measured before the budget ran out (a later phase was cut)
                result = json.loads(out.read_text(encoding="utf-8"))
                result.update(wall_s=round(time.time() - started, 1), note=f"{stopped} after the timed run")
                return result
            return {"status": "timed out", "error": stopped, "wall_s": round(time.time() - started, 1)}
        if proc.returncode != 0 or not out.is_file():
            return {"status": "failed", "error": f"worker exited {proc.returncode} (see its output above)",
                    "wall_s": round(time.time() - started, 1)}
        result = json.loads(out.read_text(encoding="utf-8"))
        result["wall_s"] = round(time.time() - started, 1)
        return result


def _start_batch(done: list[dict[str, Any]], mode: str, seq: int, first: int) -> int:
    """Seed a case's search from the nearest measured one: same tokens per step, same mode preferred."""
    ok = [c for c in done if c.get("status") == "ok"]
    for pool in ([c for c in ok if c["mode"] == mode], ok):
        if pool:
            ref = pool[-1]
            return max(1, ref["batch_size"] * ref["seq_len"] // seq)
    return first


def _add_mfu(case: dict[str, Any], device: dict[str, Any]) -> None:
    if case.get("status") != "ok":
        return
    model = case["model"]
    per_token = train_flops_per_token(case["mode"], case["params_total"], case["params_trainable"])
    attention = attention_flops_per_token(model["num_layers"], case["seq_len"], model["num_heads"],
                                          model["head_dim"])
    tps = case["tokens_per_second"]
    case["flops_per_token"] = per_token
    case["attention_flops_per_token"] = attention
    case["achieved_tflops"] = per_token * tps / 1e12 if tps else None
    for peak in ("measured", "spec"):
        value = device.get(f"peak_tflops_{peak}")
        case[f"mfu_vs_{peak}_peak"] = mfu(per_token, tps, value)
        case[f"mfu_incl_attention_vs_{peak}_peak"] = mfu(per_token + attention, tps, value)
    frozen = case.get("frozen_fwd_bwd")
    if frozen and case.get("step_time_s"):
        case["lora_step_over_frozen_fwd_bwd"] = case["step_time_s"] / frozen["step_time_s"]


def _profile_case(args: argparse.Namespace, cases: list[tuple[str, int]]) -> tuple[str, int] | None:
    if args.profile is None:
        return None
    if args.profile == "auto":
        full = [c for c in cases if c[0] == "full"] or cases
        return max(full, key=lambda c: c[1])
    wanted = parse_cases(args.profile)[0]
    if wanted not in cases:
        raise ValueError(f"--profile: {args.profile} is not one of --cases")
    return wanted


def _command(argv: list[str]) -> str:
    """The command as run, with --out shown by its folder name only (no host path in the result)."""
    shown, skip = ["python", "bench/accelerator.py"], False
    for arg in argv:
        if skip:
            shown.append(Path(arg).name or arg)
            skip = False
            continue
        if arg.startswith("--out="):
            arg = "--out=" + Path(arg[6:]).name
        skip = arg == "--out"
        shown.append(arg)
    return " ".join(shown)


def _run_cases(args: argparse.Namespace, cases: list[tuple[str, int]], profile: tuple[str, int] | None,
               steps: int, max_batch: int, deadline: float | None, cache_dir: str) -> tuple[dict, list[dict]]:
    """The device worker, then one worker per case within the budget; (device, cases)."""
    def left() -> float | None:
        return None if deadline is None else deadline - time.time()

    matmul_n = args.matmul_n or (512 if args.tiny else 8192)
    _say(f"measuring the device (matmul n={matmul_n})")
    dtype = "float32" if args.tiny else "bfloat16"  # the training dtype (sft_tiny.yaml: float32)
    device = _run_worker("device", {"matmul_n": matmul_n, "repeats": 10 if args.tiny else 20, "dtype": dtype},
                         args.tiny, left(), cache_dir)
    if device.get("status") in ("failed", "timed out"):
        return device, [{"mode": m, "seq_len": s, "status": "skipped", "error": "device measurement failed"}
                        for m, s in cases]
    results: list[dict[str, Any]] = []
    for i, (mode, seq) in enumerate(cases):
        remaining = left()
        if remaining is not None and remaining < MIN_CASE_S:
            results.append({"mode": mode, "seq_len": seq, "status": "skipped",
                            "error": f"budget: {max(remaining, 0):.0f} s left"})
            continue
        share = None if remaining is None else remaining / (len(cases) - i)
        spec = {"mode": mode, "seq_len": seq, "steps": steps, "tiny": args.tiny,
                "start_batch": _start_batch(results, mode, seq, args.start_batch), "max_batch": max_batch,
                "deadline": None if share is None else time.time() + share,
                "frozen_reference": mode == "lora" and not args.no_frozen_reference,
                "profile_dir": str(args.out.resolve()) if (mode, seq) == profile else None}
        _say(f"case {mode} seq {seq} (start batch {spec['start_batch'] or 'estimated'})")
        # Hard stop: what is left minus the minimum each later case needs (earlier cases come first).
        hard = None if remaining is None else remaining - MIN_CASE_S * (len(cases) - i - 1)
        case = _run_worker("case", spec, args.tiny, hard, cache_dir)
        case.setdefault("mode", mode)
        case.setdefault("seq_len", seq)
        _add_mfu(case, device)
        results.append(case)
    return device, results


def _say(line: str) -> None:
    print(f"accelerator: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    try:
        cases = parse_cases(args.cases if args.cases else (TINY_CASES if args.tiny else DEFAULT_CASES))
        profile = _profile_case(args, cases)
    except ValueError as exc:
        parser.error(str(exc))
    steps = args.steps or (5 if args.tiny else 10)
    max_batch = args.max_batch or (2 if args.tiny else 256)
    if steps < 3:
        parser.error(f"--steps: {steps} is too few (steps 1 and 2 warm up, 3..N are timed; at least 3)")
    if max_batch < 1:
        parser.error(f"--max-batch: expected a positive batch, got {max_batch}")
    started = time.time()
    deadline = started + args.budget_s if args.budget_s else None
    with tempfile.TemporaryDirectory(prefix="tunix-rt-accel-cache-") as cache_dir:
        device, results = _run_cases(args, cases, profile, steps, max_batch, deadline, cache_dir)

    complete = all(c.get("status") == "ok" for c in results) and "status" not in device
    rows = [(c["mode"], c["seq_len"], c.get("batch_size"), c.get("tokens_per_second"),
             (c.get("step_time_s") or 0) * 1000 or None, c.get("mfu_vs_measured_peak"), c.get("mfu_vs_spec_peak"),
             (c.get("peak_memory_bytes") or 0) / 2**30 or None, c.get("compile_s"), c.get("first_loss"),
             c.get("last_loss"), c.get("status")) for c in results]
    print(table(["mode", "seq", "batch", "tokens/s", "step ms", "MFU meas.", "MFU spec", "peak GiB", "compile s",
                 "loss 1st", "loss last", "status"], rows))
    print(f"device: {device.get('device_kind')} x{device.get('device_count')} ({device.get('backend')}), "
          f"{(device.get('matmul_peak') or {}).get('dtype')} matmul {device.get('peak_tflops_measured') or 0:.3g} "
          "TFLOP/s measured, "
          f"datasheet {device.get('peak_tflops_spec') or '-'}")
    for case in results:
        prof = case.get("profile")
        if prof:
            share = prof.get("matmul_share")
            print(f"profile {case['mode']} seq {case['seq_len']}: one step {prof.get('window_s', 0) * 1000:.1f} ms, "
                  f"matmul share {share if share is None else f'{share:.2f}'} of op time, "
                  f"data {prof.get('data_loading_s', 0) * 1000:.2f} ms, trace {prof.get('trace_file')}")
    path = write_result(args.out, "accelerator", {
        "command": _command(argv),
        "complete": complete,
        "tiny": args.tiny,
        "steps": steps,
        "budget_s": args.budget_s,
        "wall_s": round(time.time() - started, 1),
        "device": device,
        "cases": results,
        "formulas": FORMULAS,
    })
    print(f"result: {path}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
