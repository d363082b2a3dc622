"""Does the tiny profile really learn? Full sft_tiny trainings on CPU, with their figures (issue 2, item 9).

    python bench/learning.py                      # seed 0
    python bench/learning.py --seed 0 --seed 1    # several seeds, one full run each

Each run is exactly ``python training/train_jax.py --config training/configs/sft_tiny.yaml --output DIR
--device cpu [--seed N]`` (a fixed step count from the config, no wall-clock cap). Targets: whole command
<= 300 s on the 2-core CI machine, loss drop >= 60 % from the first logged step, format_compliance >= 0.9
on eval_v1. answer_correctness is printed too (a 362k-parameter model gets few answers right).
Exit 0 when every run meets the targets, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WALL_S = 300.0
TARGET_LOSS_DROP = 0.60
TARGET_FORMAT = 0.90


def _training_dir() -> Path:
    import tunix_rt.training as training  # the installed (editable) training package: training/

    return Path(training.__file__).resolve().parent


def run_once(seed: int | None, output: Path, config: Path, steps: int | None) -> dict[str, object]:
    """One full training run as a subprocess; returns its figures."""
    script = _training_dir() / "train_jax.py"
    cmd = [sys.executable, str(script), "--config", str(config), "--output", str(output), "--device", "cpu"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if steps is not None:
        cmd += ["--max_steps", str(steps)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"seed": seed, "ok": False, "error": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    result = json.loads((output / "run_result.json").read_text(encoding="utf-8"))
    tr, ev, tm = result["training"], result["eval"], result["timings_s"]
    ok = (wall <= TARGET_WALL_S and tr["loss_drop"] >= TARGET_LOSS_DROP
          and ev["format_compliance"] >= TARGET_FORMAT)
    return {
        "seed": seed, "ok": ok, "steps": tr["steps"],
        "first_loss": tr["first_loss"], "final_loss": tr["final_loss"],
        "loss_drop": tr["loss_drop"], "format_compliance": ev["format_compliance"],
        "answer_correctness": ev["answer_correctness"], "n_items": ev["n_items"], "wall_s": wall,
        "train_s": (tm["compile"] or 0) + (tm["train"] or 0), "step_time_s": tr["step_time_s"],
        "output": str(output),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, action="append", help="seed (repeatable; default: the config's)")
    p.add_argument("--config", type=Path, help="config (default: training/configs/sft_tiny.yaml)")
    p.add_argument("--max_steps", type=int, help="override the config's step count (for experiments)")
    p.add_argument("--output_root", type=Path, help="keep run folders here (default: a temp folder)")
    args = p.parse_args(argv)
    config = args.config or _training_dir() / "configs" / "sft_tiny.yaml"
    root = args.output_root or Path(tempfile.mkdtemp(prefix="tunix-rt-learning-"))
    seeds = args.seed or [None]
    header = (f"{'seed':>4} {'steps':>5} {'loss first':>10} {'last':>7} {'drop':>6} {'format':>6} "
              f"{'answer':>6} {'wall s':>7} {'train s':>7} {'ok':>3}")
    print(header, flush=True)
    rows = []
    for seed in seeds:
        r = run_once(seed, root / f"seed_{'cfg' if seed is None else seed}", config, args.max_steps)
        rows.append(r)
        if "error" in r:
            print(f"{seed!s:>4} failed after {r['wall_s']:.1f} s: {r['error']}", flush=True)
            continue
        print(f"{seed!s:>4} {r['steps']:>5} {r['first_loss']:>10.3f} {r['final_loss']:>7.3f} "
              f"{r['loss_drop']:>6.1%} {r['format_compliance']:>6.2f} {r['answer_correctness']:>6.2f} "
              f"{r['wall_s']:>7.1f} {r['train_s']:>7.1f} {'yes' if r['ok'] else 'NO':>3}", flush=True)
    print(f"targets: wall <= {TARGET_WALL_S:.0f} s, loss drop >= {TARGET_LOSS_DROP:.0%}, "
          f"format_compliance >= {TARGET_FORMAT}; runs in {root}")
    print(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
