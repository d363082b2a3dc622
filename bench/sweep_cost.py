"""A sweep against its points run one after another: API calls (counted at the emulator) and wall time.

    python bench/sweep_cost.py [--poll-min 5] [--poll-max 60] [--max-running 2] [--out DIR]

Both scenarios drive the real CLI in a subprocess (the real kaggle client) against the Kaggle emulator of
this repository, in process here, with the account limited to ``--max-running`` concurrent sessions; every
kernel is the tiny config's smoke run, trained for real by the emulator's executor:

  * ``sweep``: ``tunix-rt sweep`` of a 2×2 grid (``training.learning_rate`` × ``training.smoke_steps``),
    ``--max-concurrent`` = the limit;
  * ``4 runs``: the same four point configs (the files the sweep wrote) as four ``tunix-rt run`` commands, one
    after another, each with its own kernel — with the log stream, as ``run`` does by default.

Figures: every request the emulator answered (status polls, pushes, lookups, output pages and downloads, log
streams, the credential check), by kind, and each scenario's wall time. Run on an idle machine for timings that
mean something; the call counts depend on the poll schedule and on how long the kernels take.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRID = ["--set", "training.learning_rate=0.001,0.003", "--set", "training.smoke_steps=2,3"]


def _env(emu: object, config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(emu.client_env(user="alice", key="bench-key"))  # type: ignore[attr-defined]
    env["KAGGLE_CONFIG_DIR"] = str(config_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(env: dict[str, str], *args: str) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tunix_rt", *args], env=env, capture_output=True, text=True,
                          cwd=REPO)
    return proc.returncode, time.monotonic() - start, proc.stdout[-2000:] + proc.stderr[-2000:]


def _counted(emu: object, before: int) -> dict[str, int]:
    reqs = emu.requests[before:]  # type: ignore[attr-defined]
    return dict(Counter(r.rpc or r.target for r in reqs).most_common()) | {"total": len(reqs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poll-min", type=float, default=5.0)
    ap.add_argument("--poll-max", type=float, default=60.0)
    ap.add_argument("--max-running", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tunix_rt.emulator.app import Emulator
    from tunix_rt.emulator.behaviour import KaggleBehaviour

    poll = ["--poll-min", str(args.poll_min), "--poll-max", str(args.poll_max)]
    work = Path(tempfile.mkdtemp(prefix="tunix-rt-sweep-cost-"))
    runs = REPO / "submission_runs" / f".bench-{uuid.uuid4().hex[:8]}"  # package wants run dirs in the checkout
    emu = Emulator(work / "kaggle", behaviour=KaggleBehaviour(max_running=args.max_running)).start()
    (work / "cfg").mkdir()
    env = _env(emu, work / "cfg")
    results: dict[str, object] = {"command": " ".join(["python", "bench/sweep_cost.py", *sys.argv[1:]]),
                                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "loadavg_start": os.getloadavg(), "poll": poll, "max_running": args.max_running}
    try:
        before = len(emu.requests)
        code, wall, tail = _cli(env, "sweep", "--kernel-id", "alice/bench-sweep", "--accelerator", "cpu",
                                "--config", "training/configs/sft_tiny.yaml", *GRID, "--run-dir",
                                str(runs / "sweep"), "--output", str(work / "zips-sweep"),
                                "--max-concurrent", str(args.max_running), *poll)
        if code != 0:
            print(tail, file=sys.stderr)
            return code
        results["sweep"] = {"wall_s": round(wall, 1), "calls": _counted(emu, before),
                            "peak_running": emu.peak_running("alice")}
        plan = json.loads((runs / "sweep" / "sweep.json").read_text(encoding="utf-8"))
        before, walls = len(emu.requests), []
        for point in plan["points"]:
            config = runs / "sweep" / point["id"] / f"sft_tiny-{point['id']}.yaml"
            code, wall, tail = _cli(env, "run", "--kernel-id", f"alice/bench-run-{point['id']}", "--accelerator",
                                    "cpu", "--config", str(config), "--mode", "smoke", "--run-dir",
                                    str(runs / f"run-{point['id']}"), "--output", str(work / "zips-runs"), *poll)
            if code != 0:
                print(tail, file=sys.stderr)
                return code
            walls.append(round(wall, 1))
        results["4 runs"] = {"wall_s": round(sum(walls), 1), "each_s": walls, "calls": _counted(emu, before)}
    finally:
        emu.stop()
        shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_cost.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
