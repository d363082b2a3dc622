"""The deterministic submission zip: ``<output>/tunix_rt_<prefix>_<YYYY-MM-DD>_<short sha>.zip``.

* **name**: prefix = the run version up to its first ``_`` (``m33_v1`` → ``m33``); the date is the
  evidence's ``timestamp`` (when the run finished, not today); the short sha is the manifest's commit.
* **contents: what ran**, taken from the run's own bundle, never from today's checkout:
  ``kernel/kaggle_submission.ipynb`` is the bundle's notebook (its sha256 is the manifest's ``bundle_sha256``)
  with ``kernel/kernel-metadata.json``, and the complete payload embedded in that notebook sits at the zip's
  root (``training/`` code, configs, datasets, tokenizer, eval sets; ``kernel/requirements.txt``). After
  ``unzip`` the runbook command runs there (``python training/train_jax.py --config training/configs/… --output
  OUT --device cpu --smoke_steps 2``), and so does the notebook under papermill. The evidence files go under
  ``submission_runs/<run version>/``, next to a generated ``README_SUBMISSION.md`` (run summary, how to rerun,
  the submission checklist), and the run report (``report.html``, ``loss.png``) written next to the evidence.
* **byte-identical** for the same inputs: entries sorted, timestamps fixed at 1980-01-01, mode 0644, unix
  as the creating system, deflate at level 9, no comment.
* **refusals** (exit 2, one line): invalid or failed evidence, a missing bundle or one whose notebook is not the
  one the evidence records, a payload without the run's config or eval set (or with other bytes than the run
  recorded), an unsafe payload entry, an evidence or bundle file that resolves outside its run directory, a
  credential or a folder of this machine in any member, a known secret (:func:`tunix_rt.credentials.known_secrets`)
  in any member's or the zip's bytes (raw, base64 or URL-encoded), an evidence or bundle file that is a symbolic
  link or has more than one hard link, a config or eval set recorded without its sha256. The zip is written
  atomically or not at all.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import hostpaths, kernel_id, paths
from .errors import EXIT_USAGE, TunixRtError
from .evidence import EVIDENCE_FILES, MANIFEST_FILE, SUMMARY_FILE
from .fsutil import link_problem, sha256_bytes, write_atomic
from .layout import BUNDLE_DIR, METADATA_NAME, NOTEBOOK_NAME, bundle_notebook
from .payload import extract_payload
from .redact import Redactor
from .run_report import REPORT_FILES
from .validate import ALLOWED_KAGGLE_MODELS, GEMMA_MIN_PARAMS, loads_strict, validate_run_dir

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o100644  # a regular file, rw-r--r--
ZIP_LEVEL = 9
README_NAME = "README_SUBMISSION.md"
NOTEBOOK = f"kernel/{NOTEBOOK_NAME}"
METADATA = f"kernel/{METADATA_NAME}"
SESSION_LIMIT_S = 9 * 3600  # one Kaggle session


@dataclass(frozen=True)
class PackageResult:
    """The zip written and what is in it."""

    path: Path
    sha256: str
    size_bytes: int
    members: tuple[str, ...]


def _refuse(message: str) -> TunixRtError:
    return TunixRtError(message, EXIT_USAGE)


def archive_name(run_version: str, timestamp: str, commit_sha: str) -> str:
    """``tunix_rt_<prefix>_<YYYY-MM-DD>_<short sha>.zip`` (see the module docstring)."""
    prefix = run_version.split("_", 1)[0]
    short = commit_sha[:7] if commit_sha != "unknown" else "unknown"
    return f"tunix_rt_{prefix}_{timestamp[:10]}_{short}.zip"


def _run_file(run_dir: Path, rel: str, what: str) -> bytes:
    """A file of the run directory, which must really live there: a regular file with one link (a symbolic
    link, or a hard link that may be a host file under an evidence name, is refused)."""
    path = run_dir / rel
    resolved = path.resolve()
    if not resolved.is_relative_to(run_dir.resolve()):
        raise _refuse(f"{path}: resolves to {resolved}, outside the run directory; not packaged")
    if not resolved.is_file():
        raise _refuse(f"{path}: missing ({what}); it is required in the submission zip")
    problem = link_problem(path)
    if problem:
        raise _refuse(f"{path}: {problem}; not packaged")
    return resolved.read_bytes()


def payload_members(payload: bytes, shown: str) -> dict[str, bytes]:
    """The payload's files by name (``training/…``, ``kernel/requirements.txt``); anything but a regular file
    with a plain relative name is refused."""
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        for info in tar.getmembers():
            name = PurePosixPath(info.name)
            if not info.isfile() or name.is_absolute() or ".." in name.parts or name.parts[:1] not in (
                    ("training",), ("kernel",)):
                raise _refuse(f"{shown}: payload entry {info.name!r} is not a plain training/ or kernel/ file; "
                              "rebuild the bundle with `tunix-rt bundle`")
            extracted = tar.extractfile(info)
            assert extracted is not None  # a regular file
            members[name.as_posix()] = extracted.read()
    return members


def _check_recorded(members: dict[str, bytes], rel: Any, sha: Any, what: str, shown: str) -> None:
    """The run's config or eval set is in the payload, with the bytes the run recorded."""
    if not isinstance(rel, str) or rel not in members:
        raise _refuse(f"{shown}: the payload holds no {what} {rel!r} (the evidence's); the bundle is not the "
                      "one that ran")
    if not isinstance(sha, str) or not sha:
        raise _refuse(f"{shown}: the evidence records no sha256 for the {what} {rel!r}; a complete run names the "
                      f"{what} it used and its sha256")
    if sha256_bytes(members[rel]) != sha:
        raise _refuse(f"{shown}: {rel} in the payload differs from the {what} the run used ({str(sha)[:12]}…)")


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "n/a"
    return format(value, spec) if spec else str(value)

def _is_kernel_ref(ref: Any) -> bool:
    try:
        return isinstance(ref, str) and kernel_id.check(ref) == ref
    except TunixRtError:
        return False


def tpu_claim_gaps(manifest: dict[str, Any], model_sources: Any = None) -> list[str]:
    """What the evidence does not prove of "trained with Tunix + Gemma on a Kaggle TPU within one session"
    (empty: proven). Labels anyone can edit (``environment.platform``, ``model_id``) are not proof: the tick
    needs the Kaggle block as the push/wait stages recorded it (kernel ref, version, a TPU machine shape and
    COMPLETE as Kaggle reported them), real Gemma weights loaded (``model.source`` safetensors, a Gemma-sized
    parameter count) from a Kaggle model source named in the bundle's kernel-metadata.json."""
    env = manifest.get("environment") if isinstance(manifest.get("environment"), dict) else {}
    kaggle = manifest.get("kaggle") if isinstance(manifest.get("kaggle"), dict) else {}
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    timings = manifest.get("timings_s") if isinstance(manifest.get("timings_s"), dict) else {}
    gaps = []
    if env.get("platform") != "kaggle" or env.get("accelerator") != "tpu":
        gaps.append(f"platform {env.get('platform')}, accelerator {env.get('accelerator')}")
    ref, version = kaggle.get("kernel_ref"), kaggle.get("version_number")
    if not _is_kernel_ref(ref) or not (
            isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        gaps.append("no Kaggle kernel ref and version")
    if not str(kaggle.get("machine_shape") or "").startswith("Tpu") or kaggle.get("status") != "COMPLETE":
        gaps.append(f"Kaggle machine shape {kaggle.get('machine_shape')}, status {kaggle.get('status')}")
    params = model.get("param_count")
    if (manifest.get("model_id") not in ALLOWED_KAGGLE_MODELS or model.get("source") != "safetensors"
            or not isinstance(params, int) or params < GEMMA_MIN_PARAMS):
        gaps.append(f"model {manifest.get('model_id')} from {model.get('source')}")
    if not (isinstance(model_sources, list) and any("gemma" in str(m).lower() for m in model_sources)):
        gaps.append("no Gemma model source in kernel-metadata.json")
    total = timings.get("total")
    if not isinstance(total, (int, float)) or total > SESSION_LIMIT_S:
        gaps.append(f"kernel wall time {total}")
    return gaps


def render_readme(manifest: dict[str, Any], summary: dict[str, Any], members: list[str], run_rel: str,
                  model_sources: Any = None) -> str:
    """``README_SUBMISSION.md``: the run summary from the evidence and the submission checklist
    (``model_sources``: the bundle's kernel-metadata.json ``model_sources``)."""
    env = manifest.get("environment") or {}
    model = manifest.get("model") or {}
    training = manifest.get("training") or {}
    metrics = summary.get("metrics") or {}
    kaggle = manifest.get("kaggle") or {}
    timings = manifest.get("timings_s") or {}
    rv = manifest["run_version"]
    dirty = " (working tree had uncommitted changes)" if manifest.get("commit_dirty") else ""
    rows = [
        ("Run version", rv),
        ("Status", manifest.get("status")),
        ("Finished (UTC)", manifest.get("timestamp")),
        ("Platform", f"{env.get('platform')} (requested {_fmt(env.get('requested_accelerator'))}; "
                     f"JAX saw {_fmt(env.get('accelerator'))} × {_fmt(env.get('devices'))}"
                     f"{': ' + ', '.join(env['device_kinds']) if env.get('device_kinds') else ''})"),
        ("Model", f"`{manifest.get('model_id')}` ({_fmt(model.get('source'))}, {_fmt(model.get('finetune'))} "
                  f"fine-tune, {_fmt(model.get('param_count'), ',')} parameters)"),
        ("Dataset", f"{manifest.get('dataset')} ({_fmt(manifest.get('n_traces'))} traces, sha256 "
                    f"`{_fmt(manifest.get('dataset_sha256'))}`)"),
        ("Config", f"`{manifest.get('config_path')}`"),
        ("Training", f"{_fmt(training.get('steps'))} steps, loss {_fmt(training.get('first_loss'), '.4f')} → "
                     f"{_fmt(training.get('final_loss'), '.4f')}, "
                     f"{_fmt(training.get('tokens_per_second'), ',.0f')} tokens/s"),
        ("Eval set", f"`{summary.get('eval_set')}` ({_fmt(summary.get('n_items'))} items)"),
        ("Answer correctness (primary score)",
         f"{_fmt(summary.get('primary_score'), '.4f')} ({_fmt(metrics.get('n_correct'))}/"
         f"{_fmt(summary.get('n_items'))})"),
        ("Format compliance", _fmt(metrics.get("format_compliance"), ".4f")),
        ("Versions", f"Python {_fmt(env.get('python_version'))}, JAX {_fmt(env.get('jax_version'))}, "
                     f"Tunix {_fmt(env.get('tunix_version'))}"),
        ("Commit", f"`{manifest.get('commit_sha')}`{dirty}"),
        ("Bundle sha256", f"`{_fmt(manifest.get('bundle_sha256'))}`"),
        ("Wall time (kernel)", f"{_fmt(timings.get('total'), ',.0f')} s"),
    ]
    if kaggle:
        rows += [
            ("Kaggle kernel", f"{kaggle.get('kernel_ref')} version {_fmt(kaggle.get('version_number'))} "
                              f"({_fmt(kaggle.get('url'))})"),
            ("Kaggle machine", f"{_fmt(kaggle.get('machine_shape'))}, status {_fmt(kaggle.get('status'))}"),
        ]
    unproven = tpu_claim_gaps(manifest, model_sources)
    on_tpu = not unproven
    tpu_note = "met by this run: Kaggle's own record shows it" if on_tpu else (
        f"NOT proven by this run's Kaggle record: {'; '.join(unproven)}")
    lines = [
        f"# tunix-rt submission: {rv}",
        "",
        f"Generated by `tunix-rt package` from the evidence in `{run_rel}/`; every value below comes from "
        "the run itself.",
        "",
        "## Run summary",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows),
        "",
        "## Rerun",
        "",
        f"`{NOTEBOOK}` is the notebook that ran (sha256 `{_fmt(manifest.get('bundle_sha256'))}`, the manifest's "
        "`bundle_sha256`); the training code, configs, data and tokenizer it embeds are unpacked next to it. "
        "From this folder, with the training stack installed (`pip install -r kernel/requirements.txt`):",
        "",
        "```",
        f"python training/train_jax.py --config {manifest.get('config_path')} --output output --device cpu "
        "--smoke_steps 2",
        f"papermill {NOTEBOOK} executed.ipynb",
        "```",
        "",
        "## Contents",
        "",
        *(f"- `{m}`" for m in members),
        "",
        "## Submission checklist",
        "",
        "- [ ] Kaggle Writeup of at most 1,500 words, with a Track selected",
        "- [ ] Cover image attached to the Writeup",
        f"- [ ] Public Kaggle notebook attached to the Writeup (`{NOTEBOOK}`, the notebook that ran"
        + (f", pushed as `{kaggle.get('kernel_ref')}`)" if kaggle.get("kernel_ref") else ")"),
        "- [ ] YouTube video of at most 3 minutes, linked from the Writeup",
        f"- [{'x' if on_tpu else ' '}] Trained with Tunix + Gemma on a Kaggle TPU within one 9 h session "
        f"({tpu_note})",
        f"- [x] Evidence validates: `tunix-rt validate {run_rel}`",
        "",
    ]
    return "\n".join(lines)


def build_zip(members: dict[str, bytes]) -> bytes:
    """Deterministic zip bytes of ``members`` (see the module docstring)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever machine builds it
            info.external_attr = ZIP_MODE << 16
            zf.writestr(info, members[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL)
    return buf.getvalue()


def package(run_dir: Path, output_dir: Path, *, redactor: Redactor | None = None,
            validated: bool = False) -> PackageResult:
    """Validate ``run_dir``'s evidence and write the submission zip of what ran into ``output_dir``.
    ``validated``: the flow validated this evidence just before (stages.ValidateStage), so it is not
    validated twice."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _refuse(f"{run_dir}: no such run directory")
    redactor = redactor or Redactor()
    problems = [] if validated else validate_run_dir(run_dir, redactor=redactor)
    if problems:
        raise _refuse(f"invalid evidence: {problems[0]}"
                      + (f" (and {len(problems) - 1} more; run `tunix-rt validate {run_dir}`)"
                         if len(problems) > 1 else ""))
    manifest = loads_strict((run_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    summary = loads_strict((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    if manifest["status"] != "complete":
        raise _refuse(f"{run_dir / MANIFEST_FILE}: status: the run {manifest['status']} "
                      f"({manifest.get('failure_message')}); only a complete run is packaged")

    # The notebook that ran: the bundle's, checked against the sha256 the evidence recorded.
    bundle_rel = bundle_notebook()
    shown = str(run_dir / bundle_rel)
    notebook = _run_file(run_dir, bundle_rel, "the bundle's notebook: the zip ships the notebook that ran")
    if sha256_bytes(notebook) != manifest.get("bundle_sha256"):
        raise _refuse(f"{shown}: sha256 {sha256_bytes(notebook)[:12]}… is not the bundle that ran "
                      f"(bundle_sha256 {str(manifest.get('bundle_sha256'))[:12]}… in {MANIFEST_FILE})")
    members = payload_members(extract_payload(run_dir / bundle_rel), shown)
    _check_recorded(members, manifest.get("config_path"), manifest.get("config_sha256"), "config", shown)
    _check_recorded(members, summary.get("eval_set"), summary.get("eval_set_sha256"), "eval set", shown)
    members[NOTEBOOK] = notebook
    members[METADATA] = _run_file(run_dir, f"{BUNDLE_DIR}/{METADATA_NAME}", "the kernel metadata")
    # Evidence is filed where it is committed, whatever folder the run lived in.
    run_rel = f"submission_runs/{manifest['run_version']}"
    for name in EVIDENCE_FILES:
        members[f"{run_rel}/{name}"] = _run_file(run_dir, name, "evidence")
    for name in REPORT_FILES:  # the run report, written next to the evidence by rehearse/pull/report
        if not (run_dir / name).is_file():
            raise _refuse(f"{run_dir / name}: missing; write the run report first: tunix-rt report {run_dir}")
        members[f"{run_rel}/{name}"] = _run_file(run_dir, name, "the run report")

    try:
        sources = json.loads(members[METADATA]).get("model_sources")
    except (ValueError, AttributeError):
        sources = None
    members[README_NAME] = render_readme(manifest, summary, sorted([*members, README_NAME]), run_rel,
                                         sources).encode()
    machine = hostpaths.for_validation(paths.project_root())
    for name in sorted(members):
        text = members[name].decode("utf-8", errors="replace")
        found = redactor.find(text)
        if found:
            raise _refuse(f"{name}: contains a credential ({found[0]}); refusing to package it")
        folders = machine.find(text)
        if folders:
            raise _refuse(f"{name}: names {folders[0]} of this machine; the zip must be portable")

    data = build_zip(members)
    for name, blob in [*sorted(members.items()), ("the zip file itself", data)]:
        if redactor.holds_secret(blob):  # raw, base64 or URL-encoded, in any member's bytes or the zip's
            raise _refuse(f"{name}: holds a known credential (raw, base64 or URL-encoded); refusing to package it")
    name = archive_name(manifest["run_version"], manifest["timestamp"], manifest["commit_sha"])
    out = Path(output_dir) / name
    write_atomic(out, data)
    return PackageResult(out, sha256_bytes(data), len(data), tuple(sorted(members)))
