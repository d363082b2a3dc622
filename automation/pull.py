"""Pull the pushed version's outputs and log into the run directory, then fill evidence.

* Every ``ListKernelSessionOutput`` page is fetched by us (``page_token`` loop), so each page call goes
  through the retry policy (the SDK's own ``kernels_output`` recursion would not).
* Each file is downloaded (streamed, atomically, retried, its length checked) into ``<run-dir>/outputs/``.
  A name that would land outside it — absolute, with ``..``, through a symlink already there, or odd (NUL,
  backslash) — is refused with a warning and the pull goes on.
* The file URLs are short-lived signed URLs (research notes §4; an expired Kaggle download link answers
  ``ExpiredToken``, thiagodma/Pytorch_exs#2; since kaggle-cli PR #1176 the client raises on such a GET
  instead of saving the error page). A URL that answers 400/403 is fetched again for that file by listing
  its page again (then every page, if the file moved), and the download goes on (at most
  ``URL_REFRESHES`` times per file).
* Every file downloaded is recorded with its size and sha256 in run_state ``kaggle.pulled_files``; a rerun
  (after a crash or an exit 5) does not fetch again a file that is there with that size and sha256.
* A 403/404 on the output list names the kernel: this account cannot see it (kaggle_client.py).
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
from .fsutil import sha256_file, write_atomic
from .kaggle_client import KaggleClient, NotVisible, UrlExpired, not_visible_error
from .progress import Reporter

PAGE_SIZE = 100  # Kaggle documents 200 as the maximum; 100 keeps one page's answer small
MAX_PAGES = 10_000  # a server that keeps handing out tokens must not loop us forever
FINISHED = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED"}
URL_REFRESHES = 5  # fresh URLs fetched for one file before giving up (exit 5)


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


class _Pager:
    """ListKernelSessionOutput pages of one version; also finds a fresh URL for a file whose URL expired."""

    def __init__(self, client: KaggleClient, ref: str, version: int) -> None:
        self.client, self.ref, self.version = client, ref, version
        self.calls = 0

    def page(self, token: str | None) -> Any:
        self.calls += 1
        try:
            return self.client.output_page(self.ref, self.version, token, PAGE_SIZE)
        except NotVisible as exc:
            raise not_visible_error(self.ref, exc.http_status, self.client.username, self.version) from exc

    def fresh_url(self, token: str | None, name: str) -> str:
        """The file's URL from its page listed again, else from a walk over every page."""
        tokens: list[str | None] = [token]
        seen: set[str] = set()
        while tokens:
            current = tokens.pop(0)
            page = self.page(current)
            for item in page.files or []:
                if (getattr(item, "file_name", "") or "") == name:
                    return str(item.url)
            following = getattr(page, "next_page_token", "") or None
            if current == token and token is not None:
                tokens.append(None)  # the file is not on its old page: walk from the first one
            elif following and following not in seen and len(seen) < MAX_PAGES:
                seen.add(following)
                tokens.append(following)
        raise TunixRtError(f"output list of {self.ref}/v{self.version}: {name!r} is no longer listed", EXIT_API)


def _already_pulled(target: Path, record: Any) -> bool:
    """The file is there with the size and sha256 recorded when it was downloaded."""
    if not isinstance(record, dict) or not target.is_file() or target.is_symlink():
        return False
    return target.stat().st_size == record.get("bytes") and sha256_file(target) == record.get("sha256")


def _record_pulled(run_dir: Path, name: str, size: int, digest: str) -> None:
    state = runstate.load(run_dir)
    kaggle = state.setdefault("kaggle", {})
    kaggle.setdefault("pulled_files", {})[name] = {"bytes": size, "sha256": digest}
    runstate.save(run_dir, state)


def download_outputs(run_dir: Path, client: KaggleClient, reporter: Reporter) -> dict[str, Any]:
    """All pages, all files, the raw log. Returns a summary (files, refused, bytes, pages, skipped, expired)."""
    state = runstate.load(run_dir)
    kaggle = state.get("kaggle") or {}
    ref, version = kaggle.get("kernel_ref"), kaggle.get("version_number")
    if not ref or not version:
        raise TunixRtError(f"{run_dir}: nothing pushed yet; run `tunix-rt push` first", EXIT_USAGE)
    pulled = dict(kaggle.get("pulled_files") or {})
    outputs = run_dir / runstate.OUTPUTS_DIR
    outputs.mkdir(parents=True, exist_ok=True)
    slug = ref.split("/", 1)[1]
    pager = _Pager(client, ref, int(version))
    files: list[str] = []
    refused: list[str] = []
    total = skipped = expired = 0
    log_text: str | None = None
    token: str | None = None
    pages = 0
    seen_tokens: set[str] = set()
    while True:
        page = pager.page(token)
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
            rel = target.relative_to(outputs).as_posix()
            if _already_pulled(target, pulled.get(name)):
                skipped += 1
                files.append(rel)
                continue
            url = str(item.url)
            for refresh in range(URL_REFRESHES + 1):
                try:
                    got = client.download(url, target, name)
                    break
                except UrlExpired as exc:
                    if refresh == URL_REFRESHES:
                        raise TunixRtError(f"download {name}: its signed URL kept answering HTTP "
                                           f"{exc.http_status} after {URL_REFRESHES} fresh ones", EXIT_API) from exc
                    expired += 1
                    reporter.warn(f"download {name}: HTTP {exc.http_status} (the signed URL expired); "
                                  "listing its page again for a fresh one")
                    url = pager.fresh_url(token, name)
            _record_pulled(run_dir, name, got.size, got.sha256)
            pulled[name] = {"bytes": got.size, "sha256": got.sha256}
            total += got.size
            files.append(rel)
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
    note = "".join([f"; refused {len(refused)}" if refused else "",
                    f"; {skipped} already pulled and verified" if skipped else "",
                    f"; {expired} expired URLs fetched again" if expired else ""])
    reporter.event("downloaded", f"pulled {len(files)} files ({total} bytes, {pages} pages) into {outputs}"
                   + note, files=len(files), bytes=total, pages=pages, refused=refused, skipped=skipped,
                   expired_urls=expired)
    runstate.update(run_dir, raw_log=raw_log.relative_to(run_dir).as_posix())
    runstate.mark_stage(run_dir, "pull", "done", files=len(files), refused=refused, pages=pages, bytes=total,
                        skipped=skipped, expired_urls=expired)
    return {"files": files, "refused": refused, "bytes": total, "pages": pages, "skipped": skipped,
            "expired_urls": expired}


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
        ref, version = kaggle["kernel_ref"], int(kaggle["version_number"])
        try:
            status, failure = client.status(ref, version)
        except NotVisible as exc:
            raise not_visible_error(ref, exc.http_status, client.username, version) from exc
        if status not in FINISHED:
            raise TunixRtError(f"{ref} v{version} is still {status}; "
                               "run `tunix-rt wait` first", EXIT_USAGE)
        state = runstate.load(run_dir)
        state["kaggle"].update(status=status, failure_message=failure or None)
        runstate.save(run_dir, state)
    download_outputs(run_dir, client, reporter)
    evidence_status = fill_evidence(run_dir, reporter)
    status = (runstate.load(run_dir).get("kaggle") or {}).get("status")
    return EXIT_OK if status == "COMPLETE" and evidence_status == "complete" else EXIT_KERNEL_FAILED
