"""The deterministic submission zip: ``<output>/tunix_rt_<prefix>_<YYYY-MM-DD>_<short sha>.zip``.

* **name**: prefix = the run version up to its first ``_`` (``m33_v1`` → ``m33``); the date is the
  evidence's ``timestamp`` (when the run finished, not today); the short sha is the manifest's commit.
* **contents**: the kernel notebook, the training scripts (``training/*.py``), the configs, the dataset
  manifests (not the data), the run's eval set, the run's evidence files and its run report
  (``report.html``, ``loss.png``) under their run-dir path, and a generated ``README_SUBMISSION.md`` (run
  summary + the submission checklist).
* **byte-identical** for the same inputs: entries sorted, timestamps fixed at 1980-01-01, mode 0644, unix
  as the creating system, deflate at level 9, no comment.
* **refusals** (exit 2, one line): invalid or failed evidence, a missing required file, the run's config or
  eval set changed since the run (sha256 differs), any source path that resolves outside the project
  (symlinks included) or an evidence file that resolves outside its run directory, a credential in any
  member. The zip is written atomically or not at all.

The run directory itself is an argument: inside the checkout its evidence keeps its path in the zip
(``submission_runs/m33_v1/run_manifest.json``); a run kept elsewhere is filed under
``submission_runs/<run version>/``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import paths
from .errors import EXIT_USAGE, TunixRtError
from .evidence import EVIDENCE_FILES, MANIFEST_FILE, SUMMARY_FILE
from .fsutil import read_json, sha256_bytes, sha256_file, write_atomic
from .redact import Redactor
from .run_report import REPORT_FILES
from .validate import ALLOWED_KAGGLE_MODELS, validate_run_dir

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o100644  # a regular file, rw-r--r--
ZIP_LEVEL = 9
README_NAME = "README_SUBMISSION.md"
NOTEBOOK = "kernel/kaggle_submission.ipynb"
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


class _Sources:
    """Collects ``arcname -> bytes`` from inside the project root, refusing anything that leaves it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.members: dict[str, bytes] = {}

    def inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise _refuse(f"{path}: resolves to {resolved}, outside the project {self.root}; not packaged")
        return resolved

    def add_evidence(self, run_dir: Path, arc_dir: str, name: str) -> None:
        """An evidence file, which must really live in the run directory (a link out of it is refused)."""
        path = run_dir / name
        resolved = path.resolve()
        if not resolved.is_relative_to(run_dir.resolve()):
            raise _refuse(f"{path}: resolves to {resolved}, outside the run directory; not packaged")
        if not resolved.is_file():
            raise _refuse(f"{path}: missing (evidence); it is required in the submission zip")
        self.members[f"{arc_dir}/{name}"] = resolved.read_bytes()

    def add(self, rel: str, *, what: str) -> None:
        path = self.root / rel
        if not path.exists() and not path.is_symlink():
            raise _refuse(f"{rel}: missing ({what}); it is required in the submission zip")
        resolved = self.inside(path)
        if not resolved.is_file():
            raise _refuse(f"{rel}: not a file ({what})")
        self.members[PurePosixPath(rel).as_posix()] = resolved.read_bytes()

    def add_glob(self, pattern: str, *, what: str, exclude: tuple[str, ...] = ()) -> list[str]:
        rels = sorted(p.relative_to(self.root).as_posix() for p in self.root.glob(pattern))
        rels = [r for r in rels if PurePosixPath(r).name not in exclude]
        if not rels:
            raise _refuse(f"{pattern}: no files ({what}); at least one is required in the submission zip")
        for rel in rels:
            self.add(rel, what=what)
        return rels


def _find_run_file(sources: _Sources, recorded: str | None, sha: str | None, folder: str, what: str) -> str:
    """The repo file the run used: its recorded path (as the kernel saw it) mapped into ``folder``,
    checked against the recorded sha256 so the zip holds the bytes that ran."""
    if not recorded:
        raise _refuse(f"the evidence names no {what}")
    candidates = [recorded, f"{folder}/{PurePosixPath(recorded).name}"]
    rel_parts = PurePosixPath(recorded).parts
    if "training" in rel_parts:  # e.g. /kaggle/working/src/training/configs/x.yaml → training/configs/x.yaml
        candidates.append("/".join(rel_parts[rel_parts.index("training"):]))
    for rel in dict.fromkeys(candidates):
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            continue
        path = sources.root / rel
        if path.is_file() or path.is_symlink():
            sources.inside(path)
            if sha and sha256_file(path) != sha:
                raise _refuse(f"{rel}: sha256 differs from the {what} the run used ({sha[:12]}…); "
                              f"restore it or re-run before packaging")
            return PurePosixPath(rel).as_posix()
    raise _refuse(f"{recorded}: the run's {what} is not in the project (looked in {folder}/)")


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "n/a"
    return format(value, spec) if spec else str(value)


def render_readme(manifest: dict[str, Any], summary: dict[str, Any], members: list[str], run_rel: str) -> str:
    """``README_SUBMISSION.md``: the run summary from the evidence and the submission checklist."""
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
    on_tpu = (env.get("platform") == "kaggle" and env.get("accelerator") == "tpu"
              and manifest.get("model_id") in ALLOWED_KAGGLE_MODELS
              and isinstance(timings.get("total"), (int, float)) and timings["total"] <= SESSION_LIMIT_S)
    tpu_note = "met by this run" if on_tpu else (
        f"NOT met by this run: platform {env.get('platform')}, accelerator {env.get('accelerator')}, "
        f"model {manifest.get('model_id')}")
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
        "## Contents",
        "",
        *(f"- `{m}`" for m in members),
        "",
        "## Submission checklist",
        "",
        "- [ ] Kaggle Writeup of at most 1,500 words, with a Track selected",
        "- [ ] Cover image attached to the Writeup",
        f"- [ ] Public Kaggle notebook attached to the Writeup (`{NOTEBOOK}`"
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


def package(run_dir: Path, output_dir: Path, *, root: Path | None = None,
            redactor: Redactor | None = None) -> PackageResult:
    """Validate ``run_dir``'s evidence and write the submission zip into ``output_dir``."""
    sources = _Sources(root or paths.project_root())
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _refuse(f"{run_dir}: no such run directory")
    # Evidence keeps its run-dir path inside the checkout; a run kept elsewhere (an argument the user gave)
    # is filed under submission_runs/<run version>/, where it would be committed.
    resolved_run = run_dir.resolve()
    if resolved_run.is_relative_to(sources.root):
        run_rel = resolved_run.relative_to(sources.root).as_posix()
    else:
        run_rel = f"submission_runs/{resolved_run.name}"
    redactor = redactor or Redactor()
    problems = validate_run_dir(run_dir, redactor=redactor)
    if problems:
        raise _refuse(f"invalid evidence: {problems[0]}"
                      + (f" (and {len(problems) - 1} more; run `tunix-rt validate {run_dir}`)"
                         if len(problems) > 1 else ""))
    manifest = read_json(run_dir / MANIFEST_FILE)
    summary = read_json(run_dir / SUMMARY_FILE)
    if manifest["status"] != "complete":
        raise _refuse(f"{run_dir / MANIFEST_FILE}: status: the run {manifest['status']} "
                      f"({manifest.get('failure_message')}); only a complete run is packaged")

    sources.add(NOTEBOOK, what="the kernel notebook")
    sources.add_glob("training/*.py", what="training scripts")
    sources.add_glob("training/configs/*.yaml", what="training configs")
    sources.add_glob("training/datasets/*/manifest.json", what="dataset manifests")
    _find_run_file(sources, manifest.get("config_path"), manifest.get("config_sha256"), "training/configs",
                   "config")
    eval_rel = _find_run_file(sources, summary.get("eval_set"), summary.get("eval_set_sha256"),
                              "training/evalsets", "eval set")
    sources.add(eval_rel, what="the eval set")
    for name in EVIDENCE_FILES:
        sources.add_evidence(run_dir, run_rel, name)
    for name in REPORT_FILES:  # the run report, written next to the evidence by rehearse/pull/report
        if not (run_dir / name).is_file():
            raise _refuse(f"{run_dir / name}: missing; write the run report first: tunix-rt report {run_dir}")
        sources.add_evidence(run_dir, run_rel, name)

    members = sources.members
    readme = render_readme(manifest, summary, sorted([*members, README_NAME]), run_rel)
    members[README_NAME] = readme.encode("utf-8")
    for name in sorted(members):
        found = redactor.find(members[name].decode("utf-8", errors="replace"))
        if found:
            raise _refuse(f"{name}: contains a credential ({found[0]}); refusing to package it")

    data = build_zip(members)
    name = archive_name(manifest["run_version"], manifest["timestamp"], manifest["commit_sha"])
    out = Path(output_dir) / name
    write_atomic(out, data)
    return PackageResult(out, sha256_bytes(data), len(data), tuple(sorted(members)))
