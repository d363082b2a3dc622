"""Pull the pushed version's outputs and log into the run directory, then fill evidence.

* Every ``ListKernelSessionOutput`` page is fetched by us (``page_token`` loop), so each page call goes
  through the retry policy (the SDK's own ``kernels_output`` recursion would not).
* Each file is downloaded (streamed, atomically, retried) into ``<run-dir>/outputs/``. A name that would
  land outside it — absolute, with ``..``, through a symlink already there, or odd (NUL, backslash) — is
  refused with a warning and the pull goes on.
* The raw log (the ``log`` field, Kaggle's JSON-array text) is kept as ``<run-dir>/raw_log/<slug>.log``;
  :mod:`tunix_rt.logtext` turns it into ``kaggle_output_log.txt`` (time-ordered, folded, redacted).
* Then :func:`tunix_rt.evidence.fill_evidence`. A kernel that ended in ERROR/cancelled still gets its log
  and evidence (which say so); the caller exits 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from . import runstate
from .errors import EXIT_API, EXIT_KERNEL_FAILED, EXIT_OK, EXIT_USAGE, TunixRtError
from .fsutil import write_atomic
from .kaggle_client import KaggleClient
from .progress import Reporter

PAGE_SIZE = 100  # Kaggle documents 200 as the maximum; 100 keeps one page's answer small
MAX_PAGES = 10_000  # a server that keeps handing out tokens must not loop us forever
FINISHED = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED"}


def safe_target(root: Path, name: str) -> Path | None:
    """Where ``name`` lands under ``root``, or None when it would escape it (or is not a plain name)."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or os.path.isabs(name):
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("..", "") for p in parts) or parts == (".",):
        return None
    target = root.joinpath(*[p for p in parts if p != "."])
    # A symlink anywhere on the way (left by an earlier pull or planted) could point outside.
    cur = root
    for part in target.relative_to(root).parts:
        cur = cur / part
        if cur.is_symlink():
            return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        return None
    return target


def download_outputs(run_dir: Path, client: KaggleClient, reporter: Reporter) -> dict[str, Any]:
    """All pages, all files, the raw log. Returns a summary (files, refused, bytes, pages)."""
    state = runstate.load(run_dir)
    kaggle = state.get("kaggle") or {}
    ref, version = kaggle.get("kernel_ref"), kaggle.get("version_number")
    if not ref or not version:
        raise TunixRtError(f"{run_dir}: nothing pushed yet; run `tunix-rt push` first", EXIT_USAGE)
    outputs = run_dir / runstate.OUTPUTS_DIR
    outputs.mkdir(parents=True, exist_ok=True)
    slug = ref.split("/", 1)[1]
    files: list[str] = []
    refused: list[str] = []
    total = 0
    log_text: str | None = None
    token: str | None = None
    pages = 0
    seen_tokens: set[str] = set()
    while True:
        page = client.output_page(ref, int(version), token, PAGE_SIZE)
        pages += 1
        if log_text is None and getattr(page, "log", None):
            log_text = page.log
        for item in page.files or []:
            name = getattr(item, "file_name", "") or ""
            target = safe_target(outputs, name)
            if target is None:
                refused.append(name)
                reporter.warn(f"refusing output file {name!r}: it would land outside {outputs}")
                continue
            total += client.download(item.url, target)
            files.append(target.relative_to(outputs).as_posix())
        token = getattr(page, "next_page_token", "") or None
        if not token:
            break
        if token in seen_tokens or pages >= MAX_PAGES:
            raise TunixRtError(f"output list of {ref}/v{version}: the page tokens loop (page {pages})",
                               EXIT_API)
        seen_tokens.add(token)
    raw_dir = run_dir / runstate.RAW_LOG_DIR
    raw_log = raw_dir / f"{slug}.log"
    write_atomic(raw_log, log_text or "")  # an empty log (#603) is kept as an empty file
    reporter.event("downloaded", f"pulled {len(files)} files ({total} bytes, {pages} pages) into {outputs}"
                   + (f"; refused {len(refused)}" if refused else ""), files=len(files), bytes=total,
                   pages=pages, refused=refused)
    runstate.update(run_dir, raw_log=raw_log.relative_to(run_dir).as_posix())
    runstate.mark_stage(run_dir, "pull", "done", files=len(files), refused=refused, pages=pages, bytes=total)
    return {"files": files, "refused": refused, "bytes": total, "pages": pages}


def fill_evidence(run_dir: Path, reporter: Reporter) -> str:
    """run_manifest.json, eval_summary.json and kaggle_output_log.txt (the raw log converted, redacted)
    through the same code path as a rehearsal; returns the evidence status ("complete"/"failed")."""
    from .evidence import fill_evidence as fill
    from .run_report import write_report

    evidence = fill(run_dir)
    runstate.mark_stage(run_dir, "evidence", "done", evidence_status=evidence.status)
    reporter.event("evidence", f"evidence: {evidence.status}"
                   + (f" ({evidence.failure_message})" if evidence.failure_message else ""),
                   status=evidence.status, failure_message=evidence.failure_message)
    report = write_report(run_dir)  # report.html + loss.png next to the evidence
    reporter.event("report", f"report: {report.html} ({report.html_bytes:,} bytes)", path=str(report.html))
    return str(evidence.status)


def pull(run_dir: Path, client_factory: Callable[[], KaggleClient], reporter: Reporter) -> int:
    """``tunix-rt pull``: download, log text, evidence. Returns 0, or 1 when the kernel did not complete."""
    client = client_factory()
    reporter.add_secrets(client.credentials.secrets)
    kaggle = runstate.load(run_dir).get("kaggle") or {}
    if kaggle.get("version_number") and kaggle.get("status") not in FINISHED:
        status, failure = client.status(kaggle["kernel_ref"], int(kaggle["version_number"]))
        if status not in FINISHED:
            raise TunixRtError(f"{kaggle['kernel_ref']} v{kaggle['version_number']} is still {status}; "
                               "run `tunix-rt wait` first", EXIT_USAGE)
        state = runstate.load(run_dir)
        state["kaggle"].update(status=status, failure_message=failure or None)
        runstate.save(run_dir, state)
    download_outputs(run_dir, client, reporter)
    evidence_status = fill_evidence(run_dir, reporter)
    status = (runstate.load(run_dir).get("kaggle") or {}).get("status")
    return EXIT_OK if status == "COMPLETE" and evidence_status == "complete" else EXIT_KERNEL_FAILED
