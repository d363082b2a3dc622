"""Fill a finished run's evidence from its own outputs: one code path for every runner.

:func:`fill_evidence` reads only what the run left behind, so it does not care whether the local runner,
Docker, the emulator or Kaggle produced it:

* ``<run-dir>/run_state.json``: platform, requested accelerator, the tunix-rt command, the bundle's sha256,
  the raw log's path and (for Kaggle) the ``kaggle`` block;
* ``<run-dir>/outputs/output/``: the kernel's ``run_result.json``, ``eval_results.json``,
  ``predictions.jsonl`` and ``kernel_run.json``, checked against training's output contract
  (``tunix_rt.training.contract``; a document that breaks it makes the run ``failed``, saying where).

It writes ``run_manifest.json``, ``eval_summary.json`` and ``kaggle_output_log.txt`` into the run directory,
each atomically. A run that failed (the kernel ended in ERROR, a step raised, outputs are missing) still
gets evidence that says so: ``status: "failed"``, a ``failure_message``, the log kept, and null where
the run produced no value. Nothing is invented: every value comes from those files, from ``git`` (the
commit the evidence was filled at), or from the files' own timestamps.

Portable: every text written (the log, every string in the JSON files) goes through one pass that redacts
credentials and rewrites this machine's folders (:mod:`tunix_rt.hostpaths`: the run directory and the
checkout become relative, the virtualenv ``<venv>``, the home folder ``~``, the kernel's payload root relative).
Paths recorded for the run's config and eval set are their places in the bundle's payload
(``training/configs/…``), which is also where the submission zip holds them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunix_rt.training import contract

from . import hostpaths, paths
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import read_json, sha256_file, write_json_atomic
from .layout import OUTPUTS_DIR
from .logtext import LogStats, convert_log, utf8
from .redact import Redactor
from .runstate import RunState, state_path

MANIFEST_FILE = "run_manifest.json"
SUMMARY_FILE = "eval_summary.json"
LOG_FILE = "kaggle_output_log.txt"
EVIDENCE_FILES = (MANIFEST_FILE, SUMMARY_FILE, LOG_FILE)

MANIFEST_SCHEMA_VERSION = 1
SUMMARY_SCHEMA_VERSION = 1

PLATFORMS = ("local", "docker", "kaggle", "emulator")
KAGGLE_FIELDS = ("kernel_ref", "url", "version_number", "machine_shape", "accelerator", "status",
                 "failure_message", "pushed_at", "finished_at")
# The manifest's model block: the contract's, less the id (model_id, top level) and the weights' folder.
_MODEL_FIELDS = tuple(f for f in contract.fields("run_result", "model") if f not in ("id", "weights_path"))
_TRAINING_FIELDS = contract.fields("run_result", "training")
_KAGGLE_OK = "COMPLETE"
CUT_FOR_TIME = "cut_for_time"  # evidence status of a session that stopped for time (training/session.py)


@dataclass(frozen=True)
class Evidence:
    """The evidence files written for one run, and what they say."""

    run_dir: Path
    manifest: Path
    summary: Path
    log: Path
    status: str  # "complete" | "cut_for_time" | "failed"
    failure_message: str | None
    log_stats: LogStats

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    @property
    def cut_for_time(self) -> bool:
        """A training session that checkpointed and stopped before its deadline: not a failure, and not a
        finished run either (no evaluation; the next session resumes it: chain.py)."""
        return self.status == CUT_FOR_TIME


def _utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_utc(value: Any) -> Any:
    """An ISO 8601 time as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (naive times are taken as UTC); other values
    are returned unchanged (the schema then reports them)."""
    if not isinstance(value, str) or not value:
        return value
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_output(out_dir: Path, document: str, problems: list[str]) -> dict[str, Any] | None:
    """The kernel's ``document`` (a training contract name), or None when absent; a file that is unreadable
    or breaks the contract is a problem (and None)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    path = out_dir / contract.FILES[document]
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested deeper than a parser goes
        problems.append(f"{path.name} is unreadable ({exc.__class__.__name__})")
        return None
    error = best_match(Draft202012Validator(contract.schema(document)).iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{path.name} breaks the training output contract at {where}: {error.message[:160]}")
        return None
    return data


def git_commit(root: Path | None = None) -> tuple[str, bool | None]:
    """``(commit sha, dirty)`` of the checkout at ``root``; ``("unknown", None)`` outside a git checkout.

    Dirty means tracked files differ from the commit. ``submission_runs/`` is left out: evidence is the
    output of a run, not part of the code that ran (filling it must not make the tree "dirty").
    """
    root = root or paths.project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=30).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)submission_runs"],
            cwd=root, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return (sha or "unknown"), bool(status.strip())


def _pick(src: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    if not isinstance(src, dict):
        return None
    return {k: src.get(k) for k in keys}


def _failure(state: dict[str, Any], result: dict[str, Any] | None, kernel_run: dict[str, Any] | None,
             evals: dict[str, Any] | None, problems: list[str], failure: str | None) -> str | None:
    """Why the run failed, or None when every source agrees it completed."""
    reasons: list[str] = []
    if failure:
        reasons.append(failure)
    kaggle = state.get("kaggle") if isinstance(state.get("kaggle"), dict) else None
    if kaggle and kaggle.get("status") and str(kaggle["status"]).upper() != _KAGGLE_OK:
        msg = f"Kaggle status {kaggle['status']}"
        if kaggle.get("failure_message"):
            msg += f": {kaggle['failure_message']}"
        reasons.append(msg)
    # A session cut for time (run_result and kernel_run both say so) has no evaluation, by design.
    ended = result.get("status") if isinstance(result, dict) else None
    ended = ended if ended in ("complete", CUT_FOR_TIME) else "complete"
    if result is None and not any(p.startswith(contract.RUN_RESULT) for p in problems):
        reasons.append(f"the kernel wrote no {contract.OUTPUT_SUBDIR}/{contract.RUN_RESULT}")
    elif result is not None and result.get("status") != ended:
        reasons.append(f"run_result.json status {result.get('status')!r}"
                       + (f": {result['error']}" if result.get("error") else ""))
    if kernel_run is not None and kernel_run.get("status") != ended:
        reasons.append(f"kernel_run.json status {kernel_run.get('status')!r}")
    if (ended == "complete" and evals is None and not reasons
            and not any(p.startswith(contract.EVAL_RESULTS) for p in problems)):
        reasons.append(f"the kernel wrote no {contract.OUTPUT_SUBDIR}/{contract.EVAL_RESULTS}")
    reasons += problems
    return "; ".join(dict.fromkeys(reasons)) or None


def _count_predictions(path: Path) -> int | None:
    """Non-empty lines of predictions.jsonl, or None when the file is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def _redacted(obj: Any, redactor: Redactor) -> Any:
    """``obj`` with every string redacted and its machine folders rewritten (commands and failure messages
    can quote anything)."""
    if isinstance(obj, str):
        return redactor.redact(utf8(obj).decode("utf-8"))  # lone surrogates replaced (U+FFFD)
    if isinstance(obj, dict):
        return {(utf8(k).decode("utf-8") if isinstance(k, str) else k): _redacted(v, redactor) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redacted(v, redactor) for v in obj]
    return obj


def fill_evidence(run_dir: Path, *, failure: str | None = None, root: Path | None = None,
                  secrets: Iterable[str] = (), state: RunState | None = None) -> Evidence:
    """Write ``run_manifest.json``, ``eval_summary.json`` and ``kaggle_output_log.txt`` for ``run_dir``.

    ``failure`` is the runner's own one-line reason when it knows the run failed (non-zero exit); the
    evidence then says ``failed`` whatever the outputs claim. Raises :class:`TunixRtError` only when the
    run directory is not one (no run state with a platform); a failed run is evidence, not an error.
    ``secrets`` are credential values to redact on top of those found in the environment and Kaggle's
    config files (e.g. the ones the Kaggle client actually used). ``state`` is the run state the command
    holds (the stage engine passes it down); without it the run directory's is read.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise TunixRtError(f"{run_dir}: no such run directory", EXIT_USAGE)
    state = (state or RunState.read(run_dir)).to_dict()
    platform = state.get("platform")
    if platform not in PLATFORMS:
        raise TunixRtError(f"{state_path(run_dir)}: platform {platform!r} is not one of "
                           f"{', '.join(PLATFORMS)}; was the run started by tunix-rt?", EXIT_USAGE)
    root = root or paths.project_root()
    out_dir = run_dir / OUTPUTS_DIR / contract.OUTPUT_SUBDIR
    problems: list[str] = []
    result = _read_output(out_dir, "run_result", problems)
    evals = _read_output(out_dir, "eval_results", problems)
    kernel_run = _read_output(out_dir, "kernel_run", problems)
    failure_message = _failure(state, result, kernel_run, evals, problems, failure)
    cut = isinstance(result, dict) and result.get("status") == CUT_FOR_TIME
    status = "failed" if failure_message else CUT_FOR_TIME if cut else "complete"

    # The log first: it is kept whatever happened, and a failed run's log is the evidence that matters.
    raw_log = run_dir / state["raw_log"] if state.get("raw_log") else None
    log_path = run_dir / LOG_FILE
    redactor = Redactor(secrets, paths=hostpaths.for_evidence(run_dir, root))
    log_stats = convert_log(raw_log, log_path, redactor=redactor)

    manifest = _manifest(run_dir, state, result, kernel_run, out_dir, status, failure_message, root)
    manifest.update(_pull_names(state))
    summary = _summary(run_dir, state, result, evals, out_dir, status, failure_message)
    manifest_path = write_json_atomic(run_dir / MANIFEST_FILE, _redacted(manifest, redactor))
    summary_path = write_json_atomic(run_dir / SUMMARY_FILE, _redacted(summary, redactor))
    failure_message = redactor.redact(failure_message) if failure_message else None
    return Evidence(run_dir, manifest_path, summary_path, log_path, status, failure_message, log_stats)


def _timestamp(state: dict[str, Any], out_dir: Path, run_dir: Path) -> str:
    """When the run finished: Kaggle's finish time, else the kernel's last result file's mtime.

    Never the clock at filling time, so filling evidence twice gives the same files (and the submission
    zip's name, which carries this date, stays reproducible).
    """
    kaggle = state.get("kaggle") if isinstance(state.get("kaggle"), dict) else {}
    if kaggle.get("finished_at"):
        return normalise_utc(kaggle["finished_at"])
    for name in (contract.RUN_RESULT, contract.KERNEL_RUN, contract.EVAL_RESULTS):
        if (out_dir / name).is_file():
            return _utc_iso((out_dir / name).stat().st_mtime)
    raw = state.get("raw_log")
    if raw and (run_dir / raw).is_file():
        return _utc_iso((run_dir / raw).stat().st_mtime)
    return _utc_iso(state_path(run_dir).stat().st_mtime if state_path(run_dir).exists()
                    else datetime.now(tz=UTC).timestamp())


def _manifest(run_dir: Path, state: dict[str, Any], result: dict[str, Any] | None,
              kernel_run: dict[str, Any] | None, out_dir: Path, status: str, failure_message: str | None,
              root: Path) -> dict[str, Any]:
    result = result or {}
    kernel_run = kernel_run or {}
    bundle = state.get("bundle") if isinstance(state.get("bundle"), dict) else {}
    model = result.get("model") if isinstance(result.get("model"), dict) else None
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    dataset = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
    devices = result.get("devices") if isinstance(result.get("devices"), dict) else {}
    versions = result.get("versions") if isinstance(result.get("versions"), dict) else {}
    sha, dirty = git_commit(root)
    kaggle_state = state.get("kaggle")
    # Where the config sits in the payload (and the zip): the bundle's record, else what the kernel said.
    config_path = bundle.get("config_path") or config.get("path") or kernel_run.get("config")
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run_version": run_dir.name,
        "status": status,
        "failure_message": failure_message,
        "mode": result.get("mode") or kernel_run.get("mode") or bundle.get("mode") or state.get("mode"),
        "model_id": model.get("id") if model else None,
        "model": _pick(model, _MODEL_FIELDS),
        "dataset": dataset.get("name") or bundle.get("dataset") or kernel_run.get("dataset"),
        "dataset_sha256": dataset.get("sha256"),
        "n_traces": dataset.get("n_traces"),
        "config_path": config_path,
        "config_sha256": config.get("sha256"),
        "command": state.get("command") or result.get("command"),
        "kernel_command": result.get("command"),
        "commit_sha": sha,
        "commit_dirty": dirty,
        "timestamp": _timestamp(state, out_dir, run_dir),
        "environment": {
            "platform": state["platform"],
            "requested_accelerator": state.get("accelerator"),
            "accelerator": devices.get("platform"),
            "python_version": versions.get("python") or kernel_run.get("python_version"),
            "jax_version": versions.get("jax"),
            "tunix_version": versions.get("tunix"),
            "devices": devices.get("count"),
            "device_kinds": devices.get("kinds"),
            "kaggle_kernel_run_type": kernel_run.get("kaggle_kernel_run_type"),
        },
        "bundle_sha256": bundle.get("sha256"),
        "kaggle": _kaggle_block(kaggle_state),
        "training": _pick(result.get("training"), _TRAINING_FIELDS),
        "timings_s": result.get("timings_s") if isinstance(result.get("timings_s"), dict) else None,
    }


def _pull_names(state: dict[str, Any]) -> dict[str, Any]:
    """The pull's renamed and refused output names (pull.py, output_names.py), when it had any."""
    stages = state.get("stages") if isinstance(state.get("stages"), dict) else {}
    details = stages.get("pull") if isinstance(stages.get("pull"), dict) else {}  # StageRecord.to_dict: flat
    out: dict[str, Any] = {}
    renamed = [r for r in details.get("renamed") or [] if isinstance(r, dict)]
    if renamed:
        out["renamed_outputs"] = [{k: str(r.get(k, "")) for k in ("name", "saved_as", "reason")} for r in renamed]
    refused = [str(n) for n in details.get("refused") or []]
    if refused:
        out["refused_outputs"] = refused
    return out


def _kaggle_block(kaggle_state: Any) -> dict[str, Any] | None:
    block = _pick(kaggle_state, KAGGLE_FIELDS)
    if block is None:
        return None
    for key in ("pushed_at", "finished_at"):
        block[key] = normalise_utc(block[key])
    return block


def _summary(run_dir: Path, state: dict[str, Any], result: dict[str, Any] | None,
             evals: dict[str, Any] | None, out_dir: Path, status: str, failure_message: str | None) -> dict[str, Any]:
    result = result or {}
    bundle = state.get("bundle") if isinstance(state.get("bundle"), dict) else {}
    ev = evals or {}
    training = result.get("training") if isinstance(result.get("training"), dict) else {}
    eval_set = result.get("eval_set") if isinstance(result.get("eval_set"), dict) else {}
    preds = out_dir / contract.PREDICTIONS
    counted = _count_predictions(preds)
    evaluated = out_dir / contract.EVAL_RESULTS
    model = result.get("model") if isinstance(result.get("model"), dict) else {}
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run_version": run_dir.name,
        "status": status,
        "failure_message": failure_message,
        "model_id": model.get("id"),
        # The bundle's payload path first (training/evalsets/…): the kernel only saw its own unpacked copy.
        "eval_set": bundle.get("eval_set") or ev.get("eval_set") or eval_set.get("path"),
        "eval_set_sha256": ev.get("eval_set_sha256") or eval_set.get("sha256"),
        "metrics": {
            "final_loss": training.get("final_loss"),
            "answer_correctness": ev.get("answer_correctness"),
            "format_compliance": ev.get("format_compliance"),
            "n_correct": ev.get("n_correct"),
            "n_well_formed": ev.get("n_well_formed"),
            "by_category": ev.get("by_category"),
        },
        "primary_score": ev.get("answer_correctness"),
        "n_items": ev.get("n_items"),
        "n_predictions": counted,
        "evaluated_at": _utc_iso(evaluated.stat().st_mtime) if evaluated.is_file() else None,
        "predictions_sha256": sha256_file(preds) if preds.is_file() else None,
    }
