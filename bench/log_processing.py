"""Log processing: Kaggle-format raw log → ``kaggle_output_log.txt`` + evidence, throughput and peak memory.

    python bench/log_processing.py [--sizes 10,100,1000] [--repeat 3] [--workdir /tmp] [--keep] [--out DIR]

For each size (MB) a Kaggle-format log is generated (``[{"stream_name":"stdout","time":…,"data":"…"}\\n,{…}``,
one object per line with leading commas) with a realistic mix: training lines, tqdm progress bars redrawn
with ``\\r`` across many records, stderr warnings and tracebacks, ANSI colours, long lines, unicode and emoji,
a few credential-shaped strings, and stderr records slightly out of time order. Each measurement runs in a
fresh child process through the real code path of ``tunix-rt pull`` after its download:
:func:`tunix_rt.evidence.fill_evidence` on a run directory whose ``raw_log`` is that file (platform
``kaggle``). The child reports its wall time and memory: VmRSS before the call and VmHWM (peak) after it,
from ``/proc/self/status``. Goal (issue 5): ≥ 100 MB/s and peak memory that does not grow with log size.
The generated logs are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import median, out_arg, table, write_result

GOAL_MB_S = 100.0
MB = 1_000_000

_CHILD = r"""
import json, sys, time
from pathlib import Path

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None

from tunix_rt.evidence import fill_evidence  # imports first, so the baseline includes them
run_dir = Path(sys.argv[1])
rss0 = status("VmRSS")
t0 = time.perf_counter()
ev = fill_evidence(run_dir)
wall = time.perf_counter() - t0
s = ev.log_stats
print(json.dumps({"wall_s": wall, "rss_before": rss0, "hwm": status("VmHWM"), "status": ev.status,
                  "records": s.records, "lines": s.lines, "late": s.late, "skipped": s.skipped,
                  "out_bytes": (run_dir / "kaggle_output_log.txt").stat().st_size}))
"""


def _data_samples(rng: random.Random) -> list[tuple[str, str]]:
    """(stream, data) chunks of a realistic kernel console, JSON-encoded once."""
    out: list[tuple[str, str]] = []
    for step in range(200):
        out.append(("stdout", f"step {step:5d} | loss {rng.uniform(0.5, 6):.4f} | lr "
                              f"{rng.uniform(1e-5, 3e-4):.2e} | tokens {rng.randrange(10**6):,} | elapsed "
                              f"{rng.uniform(0, 3e4):.1f}s\n"))
    for i in range(40):
        out.append(("stderr", f"W1125 22:{i:02d}:07.123 xla_bridge.py:906] An NVIDIA GPU may be present "
                              "on this machine, but a CUDA-enabled jaxlib is not installed. Falling back to "
                              "cpu.\n"))
    out.append(("stderr", "Traceback (most recent call last):\n  File \"/kaggle/working/x.py\", line 3, in "
                          "<module>\n    main()\nValueError: simulated warning, not an error\n"))
    for _ in range(20):
        out.append(("stdout", "\x1b[32mINFO\x1b[0m \x1b[1mcheckpoint\x1b[0m saved to /kaggle/working/ckpt\n"))
    out.append(("stdout", "x" * 2000 + " long line end\n"))
    out.append(("stdout", "unicode: naïve café — 数学 — emoji 🚀🔥 — ∑ x² ≤ 42\n"))
    fake_key = "0123456789abcdef" * 2  # a made-up key the redactor must hide (built here, not a stored secret)
    out.append(("stdout", f"env dump: KAGGLE_KEY={fake_key} "
                          "HF_TOKEN=hf_abcdefghijklmnop\n"))
    out.append(("stdout", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345\n"))
    return out


def _progress_bar(total: int) -> list[tuple[str, str]]:
    """A tqdm bar redrawn with ``\\r`` once per record, finished with a newline (stderr, as tqdm writes)."""
    recs = []
    for i in range(total + 1):
        filled = i * 30 // total
        bar = "█" * filled + " " * (30 - filled)
        recs.append(("stderr", f"\rTraining: {i * 100 // total:3d}%|{bar}| {i}/{total} "
                               f"[00:{i % 60:02d}<00:10, {12.5 + i % 7:.2f}it/s]"))
    recs[-1] = (recs[-1][0], recs[-1][1] + "\n")
    return recs


def generate_log(path: Path, size_bytes: int, seed: int = 0, secret_every: int = 20_000) -> int:
    """Write a Kaggle-format log of ``size_bytes`` (to the record); returns the number of records.
    Every ``secret_every``-th record is a credential-shaped line (redaction must fire on it)."""
    rng = random.Random(seed)
    samples = [(s, json.dumps(d, ensure_ascii=False)) for s, d in _data_samples(rng)]
    secrets = [(s, d) for s, d in samples if "KAGGLE_KEY=" in d or "Bearer" in d]
    samples = [x for x in samples if x not in secrets]
    bars = [[(s, json.dumps(d, ensure_ascii=False)) for s, d in _progress_bar(n)] for n in (20, 50, 100)]
    # One ~1 MB pattern of (stream, encoded data, time delta), repeated with a running clock.
    pattern: list[tuple[str, str, float]] = []
    size = 0
    while size < MB:
        chunk = rng.choice(bars) if rng.random() < 0.05 else [rng.choice(samples)]
        for stream, data in chunk:
            # stderr can arrive a little before the stdout line already written (a separate pipe)
            late = stream == "stderr" and rng.random() < 0.2
            # ~5 ms apart on average: 1 GB (~6M records) spans about 9 hours, a Kaggle session's limit
            dt = rng.uniform(-0.004, 0.001) if late else rng.uniform(0, 0.0104)
            pattern.append((stream, data, dt))
            size += len(data) + 50
    n = 0
    t = 1.5
    written = 1
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[")
        while written < size_bytes - 1:
            parts = []
            for stream, data, dt in pattern:
                t = max(0.0, t + dt)
                if secret_every and n % secret_every == secret_every - 1:
                    stream, data = secrets[n % len(secrets)]
                line = f'{"," if n else ""}{{"stream_name":"{stream}","time":{t:.6f},"data":{data}}}\n'
                parts.append(line)
                written += len(line.encode("utf-8"))
                n += 1
                if written >= size_bytes - 1:
                    break
            fh.write("".join(parts))
        fh.write("]")
    return n


def _make_run_dir(root: Path, raw: Path) -> Path:
    from tunix_rt.layout import RAW_LOG_DIR
    from tunix_rt.runstate import RunState

    run_dir = root / "bench_log_run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / RAW_LOG_DIR).mkdir(parents=True)
    target = run_dir / RAW_LOG_DIR / "bench-kernel.log"
    target.symlink_to(raw)  # the converter opens the path; a link avoids copying a GB
    state = RunState.new(run_dir)
    state.platform, state.accelerator, state.raw_log = "kaggle", "cpu", f"{RAW_LOG_DIR}/bench-kernel.log"
    state.write()
    return run_dir


def measure(run_dir: Path) -> dict[str, Any]:
    """One conversion in a fresh child process."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"log_processing: child failed: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100,1000",
                   help="log sizes in MB, comma-separated (default 10,100,1000)")
    p.add_argument("--repeat", type=int, default=3, help="conversions per size (default 3; 1 GB: at most 2)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the generated logs go (default: the temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs")
    p.add_argument("--secret-every", type=int, default=20_000,
                   help="one credential-shaped record every N records (default 20000; 0: none)")
    out_arg(p)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    root = Path(tempfile.mkdtemp(prefix="tunix-rt-logbench-", dir=args.workdir))
    rows, figures = [], []
    try:
        for mb in sizes:
            raw = root / f"kaggle_{mb}MB.log"
            n_records = generate_log(raw, mb * MB, secret_every=args.secret_every)
            size = raw.stat().st_size
            run_dir = _make_run_dir(root, raw)
            runs = [measure(run_dir) for _ in range(min(args.repeat, 2) if mb >= 1000 else args.repeat)]
            wall = median(r["wall_s"] for r in runs) or 0.0
            hwm = median(r["hwm"] for r in runs) or 0
            base = median(r["rss_before"] for r in runs) or 0
            fig = {"size_mb": size / MB, "records": n_records, "runs": runs, "wall_median_s": wall,
                   "throughput_mb_s": size / MB / wall if wall else None, "peak_rss_mib": hwm / 2**20,
                   "rss_before_mib": base / 2**20, "peak_growth_mib": (hwm - base) / 2**20,
                   "out_mb": runs[0]["out_bytes"] / MB, "late_records": runs[0]["late"]}
            figures.append(fig)
            rows.append((f"{size / MB:.0f} MB", n_records, len(runs), wall, fig["throughput_mb_s"],
                         fig["rss_before_mib"], fig["peak_rss_mib"], fig["peak_growth_mib"], fig["out_mb"]))
            print(table(["log", "records", "runs", "wall s", "MB/s", "RSS before MiB", "peak MiB",
                         "growth MiB", "out MB"], rows[-1:]), flush=True)
            if not args.keep:
                raw.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(["log", "records", "runs", "wall s", "MB/s", "RSS before MiB", "peak MiB", "growth MiB",
                 "out MB"], rows))
    growth = [f["peak_growth_mib"] for f in figures]
    flat = len(growth) < 2 or max(growth) - min(growth) <= max(16.0, 0.25 * min(growth))
    fast = all(f["throughput_mb_s"] and f["throughput_mb_s"] >= GOAL_MB_S for f in figures)
    print(f"goal >= {GOAL_MB_S:.0f} MB/s: {'met' if fast else 'MISSED'}; "
          f"peak memory flat across sizes: {'yes' if flat else 'NO'}")
    path = write_result(args.out, "log_processing", {"figures": figures, "goal_throughput_met": fast,
                                                     "memory_flat": flat})
    print(f"result: {path}")
    return 0 if fast and flat else 1


if __name__ == "__main__":
    sys.exit(main())
