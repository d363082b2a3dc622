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
* Every file downloaded is recorded with its size and sha256 in run_state ``kaggle.pulled_files`` (the state
  is written after each file); a rerun (after a crash or an exit 5) does not fetch again a file that is there
  with that size and sha256.
* Names no folder can hold together (``f`` and ``f/inner``) or too long for the file system are renamed
  (output_names.py) with a warning, and recorded (the stage's ``renamed``, the manifest's ``renamed_outputs``).
* A 404 on the output list (the version or its outputs are gone) is exit 5 with one line; a 403 is the
  "cannot see that kernel" line (exit 2).
* The raw log (the ``log`` field, Kaggle's JSON-array text) is kept as ``<run-dir>/raw_log/<slug>.log``;
  :mod:`tunix_rt.logtext` turns it into ``kaggle_output_log.txt`` (time-ordered, folded, redacted).
* Then the ``evidence`` stage (stages.py), as after any runner. A kernel that ended in ERROR/cancelled still
  gets its log and evidence (which say so); the command exits 1.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import EXIT_API, EXIT_USAGE, TunixRtError
from .fsutil import sha256_file, write_atomic
from .kaggle_client import Downloaded, KaggleClient, NotVisible, UrlExpired, not_visible_error
from .kernel_status import FINISHED, KernelStatus
from .layout import OUTPUTS_DIR, kaggle_log
from .logtext import utf8
from .output_names import place
from .progress import Reporter
from .runstate import PulledFile, RunState

PAGE_SIZE = 100  # Kaggle documents 200 as the maximum; 100 keeps one page's answer small
MAX_PAGES = 10_000  # a server that keeps handing out tokens must not loop us forever
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
        try:
            if cur.is_symlink():
                return None
        except OSError:  # a component too long to exist (ENAMETOOLONG): output_names.place shortens it
            pass
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        return None
    return target


@dataclass(frozen=True)
class PullResult:
    """What a pull fetched: files (relative to outputs/), names refused, bytes, pages, files already there and
    verified, expired URLs fetched again."""

    files: tuple[str, ...]
    refused: tuple[str, ...]
    bytes: int
    pages: int
    skipped: int
    expired_urls: int
    renamed: tuple[dict[str, str], ...] = ()  # {"name", "saved_as", "reason"} (output_names.py)

    def details(self) -> dict[str, Any]:
        """The pull stage's record (the file list itself is in ``kaggle.pulled_files``)."""
        return {**asdict(self), "files": len(self.files), "refused": list(self.refused),
                "renamed": list(self.renamed)}


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
            if exc.http_status == 404:  # the kernel was visible (403 otherwise, rpc.py): its outputs are gone
                raise TunixRtError(f"output list of {self.ref}/v{self.version}: Kaggle answers HTTP 404 (the "
                                   "version or its outputs no longer exist); nothing more to pull", EXIT_API) from exc
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


def _already_pulled(target: Path, record: PulledFile | None) -> bool:
    """The file is there with the size and sha256 recorded when it was downloaded."""
    if record is None or not target.is_file() or target.is_symlink():
        return False
    return target.stat().st_size == record.bytes and sha256_file(target) == record.sha256


def check_finished(state: RunState, client: KaggleClient) -> None:
    """``tunix-rt pull`` before ``wait`` saw the end: ask Kaggle; exit 2 while the version still runs."""
    kaggle = state.kaggle
    if kaggle is None or not kaggle.pushed or kaggle.status in FINISHED:
        return
    ref, version = str(kaggle.kernel_ref), int(kaggle.version_number or 0)
    try:
        name, failure = client.status(ref, version)
    except NotVisible as exc:
        raise not_visible_error(ref, exc.http_status, client.username, version) from exc
    status = KernelStatus.parse(name)
    if status not in FINISHED:
        raise TunixRtError(f"{ref} v{version} is still {status}; run `tunix-rt wait` first", EXIT_USAGE)
    kaggle.status, kaggle.failure_message = status, failure or None


def _download(client: KaggleClient, pager: _Pager, token: str | None, name: str, url: str, target: Path,
              reporter: Reporter) -> tuple[Downloaded, int]:
    """Download output ``name`` of the page listed with ``token`` into ``target``, listing the page again for
    a fresh signed URL when one expired (at most ``URL_REFRESHES`` times; then exit 5); what came and how
    many URLs expired."""
    for refresh in range(URL_REFRESHES):
        try:
            return client.download(url, target, name), refresh
        except UrlExpired as exc:
            reporter.warn(f"download {name}: HTTP {exc.http_status} (the signed URL expired); "
                          "listing its page again for a fresh one")
            url = pager.fresh_url(token, name)
    try:
        return client.download(url, target, name), URL_REFRESHES
    except UrlExpired as exc:
        raise TunixRtError(f"download {name}: its signed URL kept answering HTTP "
                           f"{exc.http_status} after {URL_REFRESHES} fresh ones", EXIT_API) from exc


def download_outputs(state: RunState, client: KaggleClient, reporter: Reporter) -> PullResult:
    """All pages, all files, the raw log (see the module docstring)."""
    run_dir, kaggle = state.run_dir, state.kaggle
    if kaggle is None or not kaggle.kernel_ref or not kaggle.pushed:
        raise TunixRtError(f"{run_dir}: nothing pushed yet; run `tunix-rt push` first", EXIT_USAGE)
    ref, version = str(kaggle.kernel_ref), int(kaggle.version_number or 0)
    outputs = run_dir / OUTPUTS_DIR
    outputs.mkdir(parents=True, exist_ok=True)
    pager = _Pager(client, ref, version)
    files: list[str] = []
    refused: list[str] = []
    renamed: list[dict[str, str]] = []
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
                reporter.warn(f"refusing output file {_shown(name)}: it would land outside {outputs}")
                continue
            target, why = place(outputs, target)
            rel = target.relative_to(outputs).as_posix()
            if why:
                renamed.append({"name": name, "saved_as": rel, "reason": why})
                reporter.warn(f"output file {_shown(name)} saved as {_shown(rel)}: {why}")
            if _already_pulled(target, kaggle.pulled_files.get(name)):
                skipped += 1
                files.append(rel)
                continue
            got, refreshed = _download(client, pager, token, name, str(item.url), target, reporter)
            expired += refreshed
            kaggle.pulled_files[name] = PulledFile(got.size, got.sha256)
            state.write()  # a rerun after a crash does not fetch this file again
            total += got.size
            files.append(rel)
        token = getattr(page, "next_page_token", "") or None
        if not token:
            break
        if token in seen_tokens or pages >= MAX_PAGES:
            raise TunixRtError(f"output list of {ref}/v{version}: the page tokens loop (page {pages})",
                               EXIT_API)
        seen_tokens.add(token)
    raw_log = kaggle_log(ref.split("/", 1)[1])
    # An empty log (#603) is kept as an empty file. Credentials the kernel printed are redacted here already,
    # as the local and Docker runners do with their raw console log (evidence.py redacts again); lone
    # surrogates (undecodable bytes the kernel printed) become U+FFFD: they cannot be written as UTF-8.
    log_text = client.redactor.redact(log_text) if log_text else ""
    write_atomic(run_dir / raw_log, utf8(log_text))
    state.raw_log = raw_log
    note = "".join([f"; refused {len(refused)}" if refused else "",
                    f"; {skipped} already pulled and verified" if skipped else "",
                    f"; {expired} expired URLs fetched again" if expired else "",
                    f"; renamed {len(renamed)}" if renamed else ""])
    reporter.event("downloaded", f"pulled {len(files)} files ({total} bytes, {pages} pages) into {outputs}"
                   + note, files=len(files), bytes=total, pages=pages, refused=refused, skipped=skipped,
                   expired_urls=expired, renamed=renamed)
    return PullResult(tuple(files), tuple(refused), total, pages, skipped, expired, tuple(renamed))


def _shown(name: str) -> str:
    """An output name for a message: repr'd, cut to 200 characters (names can be hostile)."""
    text = repr(name)
    return text if len(text) <= 200 else text[:199] + "…"
