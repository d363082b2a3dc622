"""``tunix-rt emulator``: serve the local Kaggle kernels API emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tunix_rt.errors import EXIT_OK, EXIT_USAGE, TunixRtError

if TYPE_CHECKING:
    from tunix_rt.emulator import Emulator


def run(args: argparse.Namespace) -> int:
    """Start the emulator, print how to point the kaggle client at it, serve until interrupted."""
    from tunix_rt.emulator import AuthConfig, Emulator, FaultConfig, KaggleBehaviour, QuotaConfig

    if args.max_running is not None and args.max_running < 1:
        raise TunixRtError("emulator: --max-running must be at least 1", EXIT_USAGE)
    try:
        faults = FaultConfig(
            seed=args.seed, rate_429=args.rate_429, retry_after=args.retry_after, rate_5xx=args.rate_5xx,
            rate_drop=args.rate_drop, latency=args.latency, stale_polls=args.stale_polls,
            page_size_cap=args.page_size_cap,
            url_ttl=args.url_ttl,
        )
        cut = args.stream_idle_cut
        behaviour = KaggleBehaviour(
            hidden_kernel_status=args.hidden_kernel_status,
            version_lags=args.version_lags,
            stream_idle_cut_s=cut if cut and cut > 0 else None,
            stream_cut_clean=args.stream_cut_clean,
            url_expired_status=args.url_expired_status,
            new_script_s=args.new_script_seconds or 0.0,
            max_running=args.max_running,
        )
        gpu = _hours_pair(args.quota_gpu, "--quota-gpu", (0.0, 30.0))
        tpu = _hours_pair(args.quota_tpu, "--quota-tpu", (0.0, 20.0))
        quota = QuotaConfig(gpu_used_h=gpu[0], gpu_allowed_h=gpu[1], tpu_used_h=tpu[0], tpu_allowed_h=tpu[1])
    except ValueError as exc:
        raise TunixRtError(f"emulator: {exc}", EXIT_USAGE) from exc
    tokens = dict(_token_pair(t) for t in args.token or [])
    auth = AuthConfig(rejected_keys=frozenset(args.reject_key or []), tokens=tokens)
    models = args.known_model_source
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="tunix-rt-emulator-"))
    emulator = Emulator(
        data_dir, host=args.host, port=args.port, faults=faults, auth=auth, queue_seconds=args.queue_seconds,
        known_model_sources=_model_sources(models) if models else None, log_to=sys.stderr,
        session_timeout_s=args.session_timeout,
        behaviour=behaviour, quota=quota, serve_quota=not args.no_quota_endpoint,
    )
    try:
        emulator.start()
    except OSError as exc:
        raise TunixRtError(f"emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                           EXIT_USAGE) from exc
    if args.push_error:
        emulator.fail_next_pushes(args.push_error, times=1_000_000)
    _print_banner(emulator, data_dir)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the emulator", file=sys.stderr)
    finally:
        emulator.stop()
    return EXIT_OK


def _print_banner(emulator: Emulator, data_dir: Path) -> None:
    url = emulator.url
    env = emulator.client_env(user="alice", key="emulator-key")
    exports = "\n".join(f"  export {k}={v}" for k, v in env.items())
    from tunix_rt.emulator import FaultConfig

    defaults = FaultConfig().to_dict()
    faults = {k: v for k, v in emulator.faults.config.to_dict().items() if v != defaults[k] or k == "seed"}
    from tunix_rt.emulator import KaggleBehaviour

    base = KaggleBehaviour().to_dict()
    behaviour = {k: v for k, v in emulator.behaviour.to_dict().items() if v != base[k]}
    print(
        f"Kaggle API emulator listening on {url}\n"
        f"data folder: {data_dir}\n"
        f"faults: {faults or 'none'}\n"
        f"Kaggle behaviour: {behaviour or 'as Kaggle (403 for hidden kernels, 180 s stream idle cuts, …)'}\n"
        "Point the real kaggle client (or tunix-rt push/wait/pull/run) at it with:\n"
        f"{exports}\n"
        "(any username with a non-empty key is accepted; push kernels as <username>/<slug>)\n"
        f"Change faults while it runs: curl -X POST {url}/_emulator/faults -d '{{\"rate_429\": 0.3}}'\n"
        "Ctrl-C to stop.",
        flush=True,
    )


def _hours_pair(value: str | None, flag: str, default: tuple[float, float]) -> tuple[float, float]:
    """``USED:ALLOWED`` hours."""
    if not value:
        return default
    used, sep, allowed = value.partition(":")
    try:
        pair = (float(used), float(allowed))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or min(pair) < 0:
        raise TunixRtError(f"{flag} {value!r}: expected USED:ALLOWED hours, e.g. 27.5:30", EXIT_USAGE)
    return pair


def _token_pair(value: str) -> tuple[str, str]:
    token, sep, user = value.partition(":")
    if not sep or not token or not user:
        raise TunixRtError(f"--token {value!r}: expected TOKEN:USER", EXIT_USAGE)
    return token, user


def _model_sources(values: list[str]) -> dict[str, Path | None]:
    """``SOURCE`` or ``SOURCE=LOCAL_DIR`` (the folder is linked under the kernel's input/)."""
    out: dict[str, Path | None] = {}
    for value in values:
        source, sep, folder = value.partition("=")
        if sep and not Path(folder).is_dir():
            raise TunixRtError(f"--known-model-source {value!r}: {folder} is not a folder", EXIT_USAGE)
        out[source] = Path(folder) if sep else None
    return out
