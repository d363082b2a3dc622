"""Training throughput of the tiny profile on CPU: tokens/s and step time with 1 and 4 (fake) devices.

    python bench/train_throughput.py [--steps 50] [--repeat 3] [--devices 1,4] [--learning FILE] [--out DIR]

Each run is ``python training/train_jax.py --config training/configs/sft_tiny.yaml --output DIR --device cpu
--max_steps N`` (full mode: checkpoint, generation and scoring included); the figures are the run's own
``run_result.json`` ``training.tokens_per_second`` and ``training.step_time_s`` (steady state: the first,
compiling step is excluded), plus its ``timings_s``. The device counts run interleaved (1, 4, 1, 4, …);
4 devices are XLA's forced host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``) — on a
2-core machine they share the same 2 cores, so this measures the sharding overhead, not a speed-up.
The JAX compilation cache is off (``JAX_COMPILATION_CACHE_DIR`` unset) so every run compiles.

The learning figures of the full tiny profile (loss drop, format compliance, answer_correctness) come from
``bench/learning.py`` (the trainer's script): pass ``--learning`` with its saved JSON output, or
``--run-learning`` to run it once here (about 4 minutes).
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

from machine import BENCH_DIR, median, out_arg, table, write_result


def _training_dir() -> Path:
    import tunix_rt.training as training

    return Path(training.__file__).resolve().parent


def run_once(devices: int, steps: int, output: Path) -> dict[str, Any]:
    """One short full-mode training run; returns run_result.json's figures."""
    tdir = _training_dir()
    cmd = [sys.executable, str(tdir / "train_jax.py"), "--config", str(tdir / "configs" / "sft_tiny.yaml"),
           "--output", str(output), "--device", "cpu", "--max_steps", str(steps)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"train_throughput: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-800:]}")
    r = json.loads((output / "run_result.json").read_text(encoding="utf-8"))
    tr = r["training"]
    return {"devices": r["devices"]["count"], "mesh": r["devices"]["mesh"], "steps": tr["steps"],
            "tokens_per_second": tr["tokens_per_second"], "step_time_s": tr["step_time_s"],
            "tokens_trained": tr["tokens_trained"], "batch_size": tr["batch_size"], "seq_len": tr["seq_len"],
            "timings_s": r["timings_s"], "wall_s": wall}


def _learning(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.learning:
        data = json.loads(Path(args.learning).read_text(encoding="utf-8"))
        return {"source": f"recorded: {args.learning}", "runs": data if isinstance(data, list) else [data]}
    if not args.run_learning:
        return None
    proc = subprocess.run([sys.executable, str(BENCH_DIR / "learning.py")], capture_output=True, text=True,
                          check=False)
    print(proc.stdout.split("\n[", 1)[0])
    text = proc.stdout
    rows = json.loads(text[text.index("\n[") + 1:]) if "\n[" in text else []
    return {"source": "python bench/learning.py (run by this script)", "exit_code": proc.returncode,
            "runs": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50, help="training steps per run (default 50)")
    p.add_argument("--repeat", type=int, default=3, help="runs per device count (default 3)")
    p.add_argument("--devices", default="1,4", help="device counts, comma-separated (default 1,4)")
    p.add_argument("--learning", type=Path, help="JSON list printed by bench/learning.py (recorded figures)")
    p.add_argument("--run-learning", action="store_true", help="run bench/learning.py once (~4 min)")
    out_arg(p)
    args = p.parse_args(argv)
    counts = [int(d) for d in args.devices.split(",") if d.strip()]
    runs: dict[int, list[dict[str, Any]]] = {d: [] for d in counts}
    with tempfile.TemporaryDirectory(prefix="tunix-rt-throughput-") as tmp:
        for i in range(args.repeat):
            for d in counts:
                r = run_once(d, args.steps, Path(tmp) / f"d{d}_{i}")
                runs[d].append(r)
                print(f"run {i + 1} devices={d}: {r['tokens_per_second']:.0f} tokens/s, "
                      f"step {r['step_time_s'] * 1000:.1f} ms", flush=True)
    figures = {}
    for d, rs in runs.items():
        figures[str(d)] = {
            "tokens_per_second_median": median(r["tokens_per_second"] for r in rs),
            "step_time_s_median": median(r["step_time_s"] for r in rs),
            "compile_s_median": median(r["timings_s"]["compile"] for r in rs),
            "total_s_median": median(r["timings_s"]["total"] for r in rs),
            "mesh": rs[0]["mesh"], "runs": rs,
        }
    base = figures[str(counts[0])]["tokens_per_second_median"]
    print()
    print(table(["devices", "mesh", "tokens/s", "step ms", "compile s", "run total s", "tokens/s ratio"],
                [(d, f"fsdp={f['mesh']['fsdp']} tp={f['mesh']['tp']}", f["tokens_per_second_median"],
                  f["step_time_s_median"] * 1000, f["compile_s_median"], f["total_s_median"],
                  f["tokens_per_second_median"] / base if base else None) for d, f in figures.items()]))
    learning = _learning(args)
    if learning and learning["runs"]:
        print(table(["seed", "steps", "first loss", "final loss", "loss drop", "format", "answer", "wall s"],
                    [(r.get("seed"), r.get("steps"), r.get("first_loss"), r.get("final_loss"),
                      r.get("loss_drop"), r.get("format_compliance"), r.get("answer_correctness"),
                      r.get("wall_s"))
                     for r in learning["runs"]]))
    path = write_result(args.out, "train_throughput", {"steps": args.steps, "repeat": args.repeat,
                                                       "figures": figures, "learning": learning})
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
