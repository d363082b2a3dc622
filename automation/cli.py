"""The ``tunix-rt`` command line: one parser built here, one dispatcher, one module per verb.

Start-up stays fast: this module imports only argparse; each verb's module (``tunix_rt.commands.<verb>``)
is imported when that verb runs, and JAX, Tunix and kaggle are imported later still, only where used.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from . import __version__, interrupts, knobs
from .errors import EXIT_CODES, EXIT_USAGE, TunixRtError
from .paths import DEFAULT_KAGGLE_RUN, DEFAULT_REHEARSAL_RUN
from .runners import DEFAULT_MEMORY, DEFAULT_PIDS_LIMIT

_EPILOG = ("exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())
           + "; 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; the stage is recorded interrupted)"
           + ". Environment: " + "; ".join(f"${k.env} ({k.flag})" for k in knobs.KNOBS if k.flag)
           + " set flags' defaults; test/CI tuning variables are listed in docs/kaggle.md.")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tunix-rt run: error: … (tunix-rt run --help)`` and exit 2, no usage
    block above it (bad input gets one clear line); with ``--json`` the result event follows on stdout."""

    json_mode = False

    def error(self, message: str) -> NoReturn:
        from .redact import Redactor

        message = Redactor().redact(message)  # a flag's value may be a pasted key
        line = f"{self.prog}: error: {message} ({self.prog} --help)"
        print(line, file=sys.stderr)
        if _Parser.json_mode:
            _json_result(self.prog.removeprefix("tunix-rt").strip() or None, EXIT_USAGE, message, 0.0)
        raise SystemExit(EXIT_USAGE)


def _json_result(command: str | None, exit_code: int, error: str, t: float) -> None:
    """The final ``--json`` event for a failure no verb reported (flags, a run directory refused up front)."""
    sys.stdout.write(json.dumps({"command": command, "error": error, "event": "result", "exit_code": exit_code,
                                 "t": round(t, 3), "time": round(time.time(), 3)}, sort_keys=True) + "\n")
    sys.stdout.flush()


def _results_written() -> int:
    """How many ``--json`` result objects this process has printed (progress.py counts them; not imported
    at start-up, which keeps rich out of it)."""
    progress = sys.modules.get("tunix_rt.progress")
    return progress.results_written() if progress is not None else 0


def _number(text: str, *, integer: bool = False, zero_ok: bool = False, at_most: float | None = None) -> float:
    """A numeric flag's value: finite (no nan/inf, which would make a deadline or a poll interval
    meaningless), positive (or >= 0 where zero means "none"), at most ``at_most``; else argparse's exit 2."""
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is not {'an integer' if integer else 'a number'}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is not a finite number")
    if value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"{text[:200]!r} must be {'>= 0' if zero_ok else 'positive'}")
    if at_most is not None and value > at_most:
        raise argparse.ArgumentTypeError(f"{text[:200]!r} must be at most {at_most:g}")
    return value


def _positive(text: str) -> float:
    return _number(text)


def _positive_int(text: str) -> int:
    return int(_number(text, integer=True))


def _non_negative(text: str) -> float:
    return _number(text, zero_ok=True)


def _non_negative_int(text: str) -> int:
    return int(_number(text, integer=True, zero_ok=True))


def _probability(text: str) -> float:
    return _number(text, zero_ok=True, at_most=1.0)


def _add_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["smoke", "full"], default="smoke",
                   help="smoke: a few training steps (default); full: the config's whole schedule")


def _add_run_dir(p: argparse.ArgumentParser, default_run: str) -> None:
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help=f"run directory (default: submission_runs/{default_run})")


def _add_bundle_inputs(p: argparse.ArgumentParser, *, default_config: str | None) -> None:
    p.add_argument("--config", metavar="PATH", default=default_config,
                   help="training config YAML (default: %(default)s)")
    p.add_argument("--dataset", metavar="KEY", default=None,
                   help="dataset key (default: the one the config names)")
    p.add_argument("--eval-set", metavar="PATH", default=None,
                   help="eval set JSONL (default: the one the config names)")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON events and a final result")


def _add_bundle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="build the self-contained, pushable kernel folder")
    _add_mode(p)
    _add_run_dir(p, DEFAULT_REHEARSAL_RUN)
    _add_bundle_inputs(p, default_config="training/configs/sft_tiny.yaml")
    p.add_argument("--kernel-id", metavar="OWNER/SLUG", default=None,
                   help="Kaggle kernel id written into kernel-metadata.json")
    p.add_argument("--accelerator", metavar="NAME", default="cpu",
                   help="gpu-t4x2, tpu-v5e-8, cpu or a raw Kaggle machine_shape id (default: cpu)")
    _add_json(p)


def _gpus(value: str) -> str:
    """Validate a --gpus value (imported only when the flag is used: start-up stays light)."""
    from .runners.gpus import parse_gpus

    try:
        return parse_gpus(value).spec
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--gpus: ")) from None


def _memory(value: str) -> str:
    """A docker memory size: a positive number of bytes, or with b/k/m/g."""
    text = value.strip().lower()
    number = text[:-1] if text[-1:] in ("b", "k", "m", "g") else text
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a memory size such as 30g, 512m or 1073741824")
    return text


def _positive_int(value: str) -> int:
    if not value.strip().isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a positive whole number")
    return int(value)


def _add_rehearse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rehearse", help="run the bundle's notebook locally (Docker or a subprocess), fill evidence")
    p.add_argument("--backend", choices=["auto", "docker", "local"], default="auto",
                   help="docker: the repo's image via the Docker SDK; local: a subprocess; auto: docker if a "
                        "daemon answers, else local")
    _add_mode(p)
    _add_run_dir(p, DEFAULT_REHEARSAL_RUN)
    _add_bundle_inputs(p, default_config="training/configs/sft_tiny.yaml")
    p.add_argument("--image", metavar="TAG", default=None,
                   help="docker backend: run this existing image instead of building the default one")
    p.add_argument("--base-image", metavar="IMAGE", default=None,
                   help="docker backend: base of the default kernel image (default: $TUNIX_RT_BASE_IMAGE, else "
                        "python:3.12-slim-bookworm; without a registry: docker/make_base_image.sh, then "
                        "tunix-rt/debian:bookworm)")
    p.add_argument("--network", choices=["none", "host", "bridge"], default="none",
                   help="docker backend: container network (default: none)")
    p.add_argument("--gpus", nargs="?", const="all", default=None, type=_gpus, metavar="all|N|device=ID[,ID]",
                   help="docker backend: give the container these GPUs (bare --gpus: all) and build the image with "
                        "CUDA JAX (kernel/requirements-gpu.txt); default: none, CPU JAX")
    p.add_argument("--memory", metavar="SIZE", default=DEFAULT_MEMORY, type=_memory,
                   help="docker backend: the container's memory limit, no swap (docker --memory; default: "
                        "%(default)s, a Kaggle session's RAM)")
    p.add_argument("--pids-limit", metavar="N", default=DEFAULT_PIDS_LIMIT, type=_positive_int,
                   help="docker backend: most processes and threads in the container (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="rehearse into a run directory that already holds complete evidence, replacing it "
                        "(without it: refused, exit 2)")
    p.add_argument("--jax-cache", metavar="DIR|off", default=None,
                   help="JAX compilation cache folder, or off (default: $TUNIX_RT_JAX_CACHE, else "
                        "~/.cache/tunix-rt/jax); the only thing a rehearsal writes outside its run directory")
    p.add_argument("--follow", action="store_true",
                   help="show a live training panel (step/total, loss, tokens/s, elapsed, ETA, device) above "
                        "the console lines")
    p.add_argument("--json", action="store_true",
                   help="print JSON events instead of the console: log and metric events as the run goes, "
                        "then a result (each with t, seconds since the start)")


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check evidence folders against the JSON Schemas and cross-checks")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="run directories (default: every folder under submission_runs/)")
    _add_json(p)


def _add_package(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package", help="write the deterministic submission zip for a validated run")
    p.add_argument("--run-dir", metavar="DIR", required=True, help="the run directory with evidence")
    p.add_argument("--output", metavar="DIR", default="submission", help="folder for the zip (default: submission)")
    _add_json(p)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.html and loss.png (loss curve, scores, eval items, environment)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (evidence, and outputs/ when present)")
    _add_json(p)


def _add_push_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel-id", metavar="OWNER/SLUG", required=True, help="Kaggle kernel id")
    p.add_argument("--accelerator", metavar="NAME", required=True,
                   help="gpu-t4x2, tpu-v5e-8, cpu or a raw Kaggle machine_shape id")
    _add_mode(p)
    _add_run_dir(p, DEFAULT_KAGGLE_RUN)
    _add_bundle_inputs(p, default_config="training/configs/submission_gemma3_1b.yaml")
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="push this existing bundle folder (from `tunix-rt bundle`) instead of building one")
    p.add_argument("--session-timeout", metavar="SECONDS", type=_positive_int, default=None,
                   help="Kaggle session timeout (default: Kaggle's, 9 h)")
    p.add_argument("--public", action="store_true", help="make the kernel public (default: private)")
    p.add_argument("--no-internet", action="store_true", help="turn the kernel's internet off (default: on)")
    p.add_argument("--ignore-quota", action="store_true",
                   help="push even when the weekly GPU/TPU quota left is shorter than the session timeout")
    p.add_argument("--push-settle", metavar="SECONDS", type=float, default=None,
                   help="after a push whose reply never came (read timeout, dropped connection, a kill), look "
                        "for the version it may still create this long before pushing again ("
                        + knobs.help_default(knobs.PUSH_SETTLE) + ")")


def _add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="push the bundle to Kaggle on a GPU/TPU/CPU (exactly once per run)")
    _add_push_options(p)
    _add_json(p)


def _add_wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", metavar="SECONDS", type=_positive, default=None,
                   help="overall deadline (default: the session timeout plus a margin)")
    p.add_argument("--poll-min", metavar="SECONDS", type=_positive, default=None, help="first poll interval")
    p.add_argument("--poll-max", metavar="SECONDS", type=_positive, default=None, help="poll interval cap")
    p.add_argument("--stale-grace", metavar="SECONDS", type=_non_negative, default=None,
                   help="after the push, a terminal status not preceded by QUEUED/RUNNING is taken for the previous "
                        "session and a 403 for \"not visible yet\" this long ("
                        + knobs.help_default(knobs.STALE_GRACE) + ")")
    p.add_argument("--no-log-stream", dest="log_stream", action="store_const", const=False, default=None,
                   help="do not follow the kernel's log stream to see the end at once; poll only ("
                        + knobs.help_default(knobs.LOG_STREAM, "on") + "; 0 turns it off)")
    p.add_argument("--follow", action="store_true",
                   help="print the kernel's log lines as Kaggle streams them, under a live training panel (step/"
                        "total, loss, tokens/s, elapsed, ETA, device); with --json: log and metric events")


def _add_wait(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wait", help="poll the pushed version until it finishes (resumable)")
    _add_run_dir(p, DEFAULT_KAGGLE_RUN)
    _add_wait_options(p)
    _add_json(p)


def _add_pull(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="download the pushed version's outputs and log, fill evidence")
    _add_run_dir(p, DEFAULT_KAGGLE_RUN)
    _add_json(p)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="push → wait → pull → evidence → validate → package, resumable")
    _add_push_options(p)
    p.add_argument("--output", metavar="DIR", default="submission", help="folder for the zip (default: submission)")
    p.add_argument("--force", action="store_true",
                   help="start a run in a run directory that already holds complete evidence (a rehearsal's), "
                        "replacing it (without it: refused, exit 2; a pushed run resumes either way)")
    p.add_argument("--sessions", metavar="N", type=int, default=None,
                   help="train past one session's limit: a chain of at most N sessions, kernel <slug>-s<k> each "
                        "resuming the previous one's checkpoint, in --run-dir DIR/s<k>/ with DIR/chain.json "
                        "(needs --mode full; stops when the schedule is finished)")
    p.add_argument("--resume-from", metavar="OWNER/SLUG", default=None,
                   help="attach this kernel's output (kernel_sources) and resume its checkpoint (needs --mode "
                        "full); with --sessions: what session 1 resumes")
    _add_wait_options(p)
    _add_json(p)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of configs as concurrent Kaggle kernels and compare them "
                                     "(resumable)")
    p.add_argument("--kernel-id", metavar="OWNER/SLUG-PREFIX", required=True,
                   help="each point's kernel is OWNER/SLUG-PREFIX-<point id>")
    p.add_argument("--accelerator", metavar="NAME", required=True,
                   help="gpu-t4x2, tpu-v5e-8, cpu or a raw Kaggle machine_shape id")
    _add_mode(p)
    p.add_argument("--config", metavar="PATH", default="training/configs/submission_gemma3_1b.yaml",
                   help="the base training config YAML (default: %(default)s)")
    p.add_argument("--set", metavar="KEY=V1,V2,...", action="append", required=True,
                   help="a dotted config key and its values (repeatable); the grid is the product of the lists")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="sweep folder: DIR/<point id>/ per point, DIR/comparison.* (default: "
                        "submission_runs/sweep-<slug prefix>)")
    p.add_argument("--output", metavar="DIR", default="submission", help="folder for the zips (default: submission)")
    p.add_argument("--max-concurrent", metavar="N", type=int, default=2,
                   help="at most this many Kaggle sessions at once (default: 2)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=None,
                   help="the whole sweep's deadline; past it: exit 3, kernels keep running, rerun to resume "
                        "(default: none; each point's own deadline is its session timeout plus a margin)")
    p.add_argument("--poll-min", metavar="SECONDS", type=float, default=None,
                   help="first interval between status calls (shared by all running points)")
    p.add_argument("--poll-max", metavar="SECONDS", type=float, default=None,
                   help="cap of that interval (default 60; with N points running each is asked every N intervals)")
    p.add_argument("--push-settle", metavar="SECONDS", type=float, default=None,
                   help="after a push whose reply never came, look for the version it may still create this long "
                        "before pushing that point again (" + knobs.help_default(knobs.PUSH_SETTLE) + ")")
    p.add_argument("--no-log-stream", dest="log_stream", action="store_const", const=False, default=None,
                   help="do not follow the running kernels' log streams to see their ends at once; poll only ("
                        + knobs.help_default(knobs.LOG_STREAM, "on") + ")")
    _add_json(p)


def _add_quota(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quota", help="show the weekly GPU and TPU quota: used, allowed, left, refresh time")
    _add_json(p)


def _add_emulator(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulator", help="serve a local Kaggle kernels API emulator (for tests and CI)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one, printed at start)")
    p.add_argument("--data-dir", metavar="DIR", default=None, help="where kernels and outputs are kept")
    p.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    p.add_argument("--rate-429", type=_probability, default=0.0, metavar="P", help="answer 429 with this probability")
    p.add_argument("--retry-after", type=_non_negative, default=1.0, metavar="S", help="Retry-After seconds on 429")
    p.add_argument("--rate-5xx", type=_probability, default=0.0, metavar="P",
                   help="answer 500/503 with this probability")
    p.add_argument("--rate-drop", type=_probability, default=0.0, metavar="P",
                   help="drop the connection with this probability")
    p.add_argument("--latency", type=_non_negative, default=0.0, metavar="S", help="add this delay to every answer")
    p.add_argument("--stale-polls", type=_non_negative_int, default=0, metavar="N",
                   help="after a push, answer the previous version's status N times")
    p.add_argument("--page-size-cap", type=_positive_int, default=None, metavar="N", help="cap output pages at N files")
    p.add_argument("--known-model-source", action="append", metavar="SOURCE[=DIR]",
                   help="a model source the emulator hosts (repeatable; DIR is linked under the kernel's input)")
    p.add_argument("--push-error", metavar="MSG", default=None, help="answer the next push with this error")
    p.add_argument("--reject-key", action="append", metavar="KEY", help="reject this API key (repeatable)")
    p.add_argument("--token", action="append", metavar="TOKEN:USER", help="accept this API token (repeatable)")
    p.add_argument("--url-ttl", type=_positive, default=None, metavar="S", help="expire download URLs after S seconds")
    p.add_argument("--session-timeout", type=_positive, default=None, metavar="S", help="end sessions after S seconds")
    p.add_argument("--queue-seconds", type=_non_negative, default=0.5, metavar="S",
                   help="time a new version stays QUEUED")
    p.add_argument("--new-script-seconds", type=_non_negative, default=0.0, metavar="S",
                   help="time a new version reads NEW_SCRIPT before QUEUED")
    p.add_argument("--url-expired-status", type=int, choices=[400, 403], default=400,
                   help="what an expired download URL answers (default: 400, GCS ExpiredToken)")
    p.add_argument("--stream-idle-cut", type=_non_negative, default=180.0, metavar="S",
                   help="cut a log stream that sent nothing for S seconds, as Kaggle's load balancer does "
                        "(default: 180; 0 = never)")
    p.add_argument("--stream-cut-clean", action="store_true",
                   help="end cut streams cleanly (no END_OF_LOG) instead of dropping the connection")
    p.add_argument("--version-lags", action="store_true",
                   help="currentVersionNumber advances only when a version's session ends")
    p.add_argument("--hidden-kernel-status", type=int, choices=[403, 404], default=403,
                   help="answer for a kernel the caller cannot see (default: 403 as Kaggle; 404: the old "
                        "emulator behaviour)")
    p.add_argument("--max-running", type=int, default=None, metavar="N",
                   help="refuse a push in-band, as Kaggle does, while the account has N sessions of that kind "
                        "(GPU/TPU/CPU) queued or running (default: no limit)")
    p.add_argument("--no-quota-endpoint", action="store_true",
                   help="do not serve GetAcceleratorQuotaStatistics (an unsupported endpoint)")
    p.add_argument("--quota-gpu", metavar="USED:ALLOWED", default=None,
                   help="weekly GPU quota in hours, e.g. 27.5:30 (default 0:30)")
    p.add_argument("--quota-tpu", metavar="USED:ALLOWED", default=None,
                   help="weekly TPU quota in hours, e.g. 0:20 (default 0:20)")


_COMMANDS = {
    "bundle": _add_bundle,
    "rehearse": _add_rehearse,
    "validate": _add_validate,
    "package": _add_package,
    "report": _add_report,
    "push": _add_push,
    "wait": _add_wait,
    "pull": _add_pull,
    "run": _add_run,
    "sweep": _add_sweep,
    "quota": _add_quota,
    "emulator": _add_emulator,
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tunix-rt",
        description="Script Kaggle training kernels: bundle, rehearse locally, push on GPU/TPU, wait, pull, "
                    "evidence and a deterministic submission zip.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"tunix-rt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    start, results_before = time.monotonic(), _results_written()
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_mode = "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    interrupts.install()  # SIGTERM and SIGHUP end a command as Ctrl-C does (clean-up runs), exit 128+signal
    try:
        module = importlib.import_module(f"tunix_rt.commands.{args.command}")
        return int(module.run(args) or 0)
    except TunixRtError as exc:
        from .redact import Redactor

        error, code = Redactor().redact(exc.message), exc.exit_code
        line = f"tunix-rt {args.command}: error: {error}"
    except KeyboardInterrupt as exc:
        error, code = f"interrupted ({interrupts.signal_name(exc)})", interrupts.exit_code(exc)
        line = f"tunix-rt {args.command}: {error}"
    except Exception as exc:  # noqa: BLE001 - a bug: one redacted line, the traceback saved (crash.py)
        from . import crash

        line, code = crash.report(args.command, exc, getattr(args, "run_dir", None))
        error = line.split(": ", 1)[-1]
    print(line, file=sys.stderr)
    if getattr(args, "json", False) and _results_written() == results_before:
        _json_result(args.command, code, error, time.monotonic() - start)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
