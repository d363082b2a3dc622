"""The Kaggle RPCs the emulator answers.

``kernels.KernelsApiService/*`` and ``security.OAuthService/IntrospectToken`` (quota and model lookups:
accounts.py).

Each handler takes the request body (camelCase JSON, as kagglesdk sends it) and returns
``(http_status, json_body)``. Errors use Kaggle's ``{"code": N, "message": ...}`` shape; a push that
Kaggle refuses comes back as ``200 {"error": ...}``, as the real service does (#545, #185). A kernel the
caller cannot see — missing, or someone else's private one — answers 403 "Permission 'kernels.get' was
denied" (kaggle-cli PR #1201; behaviour.py ``hidden_kernel_status``); a missing version of a kernel the
caller can see answers 404.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunix_rt.emulator import kaggle_log, sessions
from tunix_rt.emulator.behaviour import KaggleBehaviour
from tunix_rt.emulator.faults import FaultInjector
from tunix_rt.emulator.store import Kernel, Store, Version
from tunix_rt.kernel_status import KernelStatus

DEFAULT_MODEL_SOURCES: Mapping[str, Path | None] = {"google/gemma-3/transformers/gemma-3-1b-it/1": None}
DEFAULT_PAGE_SIZE = 20  # the CLI's default
MAX_PAGE_SIZE = 200  # Kaggle's documented maximum

_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{3,48}[a-z0-9]$")  # 5-50 chars, as the client checks
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")

Answer = tuple[int, dict[str, Any]]


def not_found(message: str) -> Answer:
    return 404, {"code": 404, "message": message}


def bad_request(message: str) -> Answer:
    return 400, {"code": 400, "message": message}


@dataclass
class Sources:
    """What the emulator hosts: model/dataset/competition sources a kernel may attach.

    Each maps a source string to a local folder linked under ``input/`` (or None: accepted, not mounted).
    """

    models: dict[str, Path | None] = field(default_factory=lambda: dict(DEFAULT_MODEL_SOURCES))
    datasets: dict[str, Path | None] = field(default_factory=dict)
    competitions: dict[str, Path | None] = field(default_factory=dict)


@dataclass
class RpcContext:
    user: str | None  # the authenticated user (None for IntrospectToken)
    base_url: str  # scheme://host the client used; output-file URLs are built on it


class KernelsService:
    """State and logic behind the RPCs; the HTTP layer (server.py) only routes to it."""

    def __init__(
        self,
        store: Store,
        faults: FaultInjector,
        sources: Sources,
        tokens: Callable[[], dict[str, str]],
        launch: Callable[[Version, dict[str, Path]], None],
        behaviour: Callable[[], KaggleBehaviour] = KaggleBehaviour,
    ) -> None:
        self.store = store
        self.faults = faults
        self.sources = sources
        self._tokens = tokens
        self._launch = launch
        self.behaviour = behaviour
        self._push_errors: deque[str] = deque()
        self._lock = threading.Lock()
        self.peak_running: dict[str, int] = {}  # the most sessions an account had at once (sessions.py)

    def _all_versions(self) -> list[Version]:
        return [v for k in self.store.kernels() for v in k.versions.values()]

    def fail_next_pushes(self, message: str, times: int = 1) -> None:
        """The next ``times`` SaveKernel calls answer ``200 {"error": message}`` and store nothing."""
        with self._lock:
            self._push_errors.extend([message] * times)

    def handlers(self) -> dict[str, Callable[[dict[str, Any], RpcContext], Answer]]:
        return {
            "kernels.KernelsApiService/SaveKernel": self.save_kernel,
            "kernels.KernelsApiService/GetKernelSessionStatus": self.get_status,
            "kernels.KernelsApiService/ListKernelSessionOutput": self.list_output,
            "kernels.KernelsApiService/GetKernel": self.get_kernel,
            "kernels.KernelsApiService/ListKernels": self.list_kernels,
            "security.OAuthService/IntrospectToken": self.introspect_token,
        }

    # ---- SaveKernel ------------------------------------------------------------------------------

    def save_kernel(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        with self._lock:
            if self._push_errors:
                return 200, {"error": self._push_errors.popleft()}
        target = self._push_target(body)
        if isinstance(target, str):
            return 200, {"error": target}
        owner, slug = target
        if owner != ctx.user:
            return 403, {"code": 403, "message": "Permission 'kernels.create' was denied"}
        text = body.get("text") or ""
        kernel_type = str(body.get("kernelType") or "").lower()
        language = str(body.get("language") or "").lower()
        title = str(body.get("newTitle") or "")
        if not text.strip():
            return 200, {"error": "Kernel text is required (the code file is empty or missing)."}
        if kernel_type not in ("notebook", "script"):
            return 200, {
                "error": f"Invalid kernelType {body.get('kernelType')!r}: expected notebook or script."
            }
        if language != "python":
            return 200, {"error": f"The emulator runs python kernels only, not {body.get('language')!r}."}
        if title and len(title) < 5:
            return 200, {"error": "Title must be at least 5 characters."}
        shape = str(body.get("machineShape") or "")
        if shape and shape not in self.behaviour().machine_shapes:
            return 200, {"error": f"Invalid machine shape {shape!r}: not an accelerator Kaggle offers."}
        if kernel_type == "notebook":
            try:
                json.loads(text)
            except json.JSONDecodeError:
                return 200, {"error": "Notebook text is not valid JSON."}
        invalid, links = self._check_sources(body)
        timeout = body.get("sessionTimeoutSeconds")
        quick_save = str(body.get("kernelExecutionType") or "").upper().endswith("QUICK_SAVE")
        request = {k: v for k, v in body.items() if k != "text"}
        kind, limit = sessions.session_kind(request), self.behaviour().max_running
        with self._lock:  # the count and the new session together: concurrent pushes cannot both squeeze in
            running = sessions.active_sessions(self._all_versions(), owner, kind)
            if limit is not None and not quick_save and running >= limit:
                return 200, {"error": sessions.limit_message(kind, limit)}
            kernel, version = self.store.create_version(
                owner,
                slug,
                title=title,
                kernel_type=kernel_type,
                language=language,
                text=text,
                request=request,
                session_timeout_s=float(timeout) if timeout else None,
                status=KernelStatus.COMPLETE if quick_save else (KernelStatus.NEW_SCRIPT
                                                                 if self.behaviour().new_script_s
                                                                 else KernelStatus.QUEUED),
            )
            if not quick_save:
                self.peak_running[owner] = max(self.peak_running.get(owner, 0), running + 1)
        with self.store.lock:
            kernel.stale_remaining = self.faults.config.stale_polls
        if quick_save:
            self.store.update(version, finished_at=time.time())
        else:
            self._launch(version, links)
        answer: dict[str, Any] = {
            "ref": f"/code/{owner}/{slug}",
            "url": f"{ctx.base_url}/code/{owner}/{slug}",
            "versionNumber": version.number,
            "kernelId": kernel.kernel_id,
        }
        answer.update({k: v for k, v in invalid.items() if v})
        return 200, answer

    def _push_target(self, body: dict[str, Any]) -> tuple[str, str] | str:
        """(owner, slug) of the pushed kernel, or a Kaggle-style error text."""
        ref = str(body.get("slug") or "")
        if not ref and body.get("id"):
            kernel = self.store.kernel_by_id(int(body["id"]))
            if kernel is None:
                return f"Kernel not found: id {body['id']}"
            return kernel.owner, kernel.slug
        if not ref:
            return "Kernel slug (id) is required."
        owner, sep, slug = ref.partition("/")
        if not sep or "/" in slug:
            return f"Invalid kernel id {ref!r}: expected owner/slug."
        if not _OWNER_RE.match(owner) or not _SLUG_RE.match(slug):
            return (
                f"Invalid kernel id {ref!r}: the slug must be 5-50 lowercase letters, digits or hyphens, "
                "not starting or ending with a hyphen."
            )
        return owner, slug

    def _check_sources(self, body: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, Path]]:
        """The ``invalid*Sources`` lists and the input folder links for the accepted sources."""
        invalid: dict[str, list[str]] = {}
        links: dict[str, Path] = {}

        def check(
            key: str, out_key: str, known: Mapping[str, Path | None], mount: Callable[[str], str]
        ) -> None:
            for src in body.get(key) or []:
                match = _match_source(str(src), known)
                if match is None:
                    invalid.setdefault(out_key, []).append(src)
                elif known[match] is not None:
                    links[mount(match)] = Path(known[match])  # type: ignore[arg-type]

        # Kaggle mounts a model at /kaggle/input/<model>/<framework>/<variation>/<version>.
        check("modelDataSources", "invalidModelSources", self.sources.models, lambda s: s.split("/", 1)[1])
        check(
            "datasetDataSources", "invalidDatasetSources", self.sources.datasets, lambda s: s.split("/")[-1]
        )
        check("competitionDataSources", "invalidCompetitionSources", self.sources.competitions, lambda s: s)
        # A kernel source (kaggle-cli docs/kernels_metadata.md: ``kernel_sources``, "username/kernel-slug") is
        # mounted read-only at /kaggle/input/<slug>/ (the classic layout; research notes docker.md): the output of
        # its latest version that completed (defensive guess: a running or failed version has no output to
        # attach). A kernel with no completed version is accepted and mounts nothing.
        kernels = {k.ref: self.store.latest_output(k) for k in self.store.kernels()}
        check("kernelDataSources", "invalidKernelSources", kernels, lambda s: s.split("/")[-1])
        return invalid, links

    # ---- status, outputs, kernel -----------------------------------------------------------------

    def visible(self, kernel: Kernel | None, user: str | None) -> bool:
        """Whether ``user`` may see ``kernel``: it has a version and is public or theirs."""
        if kernel is None or not kernel.versions:
            return False
        return kernel.owner == user or not bool(kernel.metadata.get("isPrivate", True))

    def hidden(self, owner: str, slug: str) -> Answer:
        """The answer for a kernel the caller cannot see (behaviour.hidden_kernel_status)."""
        status = self.behaviour().hidden_kernel_status
        if status == 403:
            return 403, {"code": 403, "message": "Permission 'kernels.get' was denied"}
        return not_found(f"Kernel {owner}/{slug} not found")

    def _resolve(self, body: dict[str, Any], ctx: RpcContext | None = None) -> tuple[Kernel, Version] | Answer:
        owner, slug = str(body.get("userName") or ""), str(body.get("kernelSlug") or "")
        kernel = self.store.kernel(owner, slug)
        if not self.visible(kernel, ctx.user if ctx else owner):
            return self.hidden(owner, slug)
        assert kernel is not None
        label = str(body.get("versionLabel") or "")
        if not label:
            return kernel, kernel.latest()  # type: ignore[return-value]
        match = _VERSION_RE.match(label)
        version = kernel.versions.get(int(match.group(1))) if match else None
        if version is None:
            return not_found(f"Version {label!r} of kernel {owner}/{slug} not found")
        return kernel, version

    def get_status(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        found = self._resolve(body, ctx)
        if not isinstance(found[0], Kernel):
            return found  # type: ignore[return-value]
        kernel, version = found  # type: ignore[misc]
        with self.store.lock:
            latest = kernel.latest()
            if kernel.stale_remaining > 0 and latest is not None and version.number == latest.number:
                # Right after a push Kaggle answered the previous session's state, whatever version was
                # asked for (kaggle-cli PR #1201). With no previous session, the new one reads QUEUED.
                kernel.stale_remaining -= 1
                previous = kernel.versions.get(
                    max((n for n in kernel.versions if n < latest.number), default=0)
                )
                if previous is None:
                    return 200, {"status": KernelStatus.QUEUED}
                version = previous
            status, failure = version.status, version.failure_message
        answer: dict[str, Any] = {"status": status}
        if status == KernelStatus.ERROR and failure:
            answer["failureMessage"] = failure
        return 200, answer

    def list_output(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        found = self._resolve(body, ctx)
        if not isinstance(found[0], Kernel):
            return found  # type: ignore[return-value]
        _, version = found  # type: ignore[misc]
        names = self.store.output_names(version)
        offset = 0
        token = str(body.get("pageToken") or "")
        if token:
            parsed = _parse_page_token(token)
            if parsed is None or parsed[0] != version.number:
                return bad_request(f"Invalid page token {token!r}")
            offset = parsed[1]
        size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
        size = max(1, min(size, MAX_PAGE_SIZE, self.faults.config.page_size_cap or MAX_PAGE_SIZE))
        page = names[offset : offset + size]
        ttl = self.faults.config.url_ttl
        expires = time.time() + ttl if ttl is not None else None
        files = [
            {"url": f"{ctx.base_url}/blob/{self.store.blob_token(version, n, expires)}", "fileName": n}
            for n in page
        ]
        answer: dict[str, Any] = {"files": files, "log": self.log_text(version)}
        if offset + size < len(names):
            answer["nextPageToken"] = _page_token(version.number, offset + size)
        return 200, answer

    def log_text(self, version: Version) -> str:
        """The Kaggle-format log; while the session runs, what exists so far, closed into valid JSON."""
        try:
            # A kernel can print bytes that are not UTF-8; they reach the client as lone-surrogate escapes
            # (``\udcff``), the hostile text a log reader must survive (tests/test_hostile.py).
            text = version.log_path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return ""
        return text if version.finished else kaggle_log.close_text(text)

    def get_kernel(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        found = self._resolve(body, ctx)
        if not isinstance(found[0], Kernel):
            return found  # type: ignore[return-value]
        kernel, version = found  # type: ignore[misc]
        blob = {
            "source": version.source.read_text(encoding="utf-8"),
            "language": version.language,
            "kernelType": version.kernel_type,
            "slug": kernel.slug,
        }
        return 200, {"metadata": kernel_metadata(kernel, version, self.behaviour().version_lags), "blob": blob}

    def list_kernels(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        user, search = str(body.get("user") or ""), str(body.get("search") or "").lower()
        found = [
            k
            for k in self.store.kernels()
            if self.visible(k, ctx.user)
            and (not user or k.owner == user)
            and (not search or search in k.slug or search in k.title.lower())
        ]
        size = max(1, min(int(body.get("pageSize") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE))
        page = max(1, int(body.get("page") or 1))
        chunk = found[(page - 1) * size : page * size]
        lags = self.behaviour().version_lags
        return 200, {"kernels": [kernel_metadata(k, k.latest(), lags) for k in chunk]}  # type: ignore[arg-type]

    def introspect_token(self, body: dict[str, Any], ctx: RpcContext) -> Answer:
        user = self._tokens().get(str(body.get("token") or ""))
        if user is None:
            return 200, {"active": False}
        return 200, {
            "active": True,
            "username": user,
            "clientId": "tunix-rt-emulator",
            "scope": "resources.admin",
        }


def kernel_metadata(kernel: Kernel, version: Version, version_lags: bool = False) -> dict[str, Any]:
    """ApiKernelMetadata (camelCase) for a kernel as of ``version``. ``version_lags``: currentVersionNumber is
    the newest version whose session has ended (absent while the first one runs)."""
    req = version.request
    last_run = version.finished_at or version.started_at or version.pushed_at
    out = {
        "id": kernel.kernel_id,
        "ref": kernel.ref,
        "title": kernel.title,
        "author": kernel.owner,
        "slug": kernel.slug,
        "lastRunTime": datetime.fromtimestamp(last_run, UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="milliseconds")
        + "Z",
        "language": version.language,
        "kernelType": version.kernel_type,
        "isPrivate": bool(req.get("isPrivate", True)),
        "enableGpu": bool(req.get("enableGpu", False)),
        "enableTpu": bool(req.get("enableTpu", False)),
        "enableInternet": bool(req.get("enableInternet", False)),
    }
    finished = [n for n, v in kernel.versions.items() if v.finished]
    current = (max(finished) if finished else 0) if version_lags else max(kernel.versions)
    if current:
        out["currentVersionNumber"] = current
    for key in (
        "categoryIds",
        "datasetDataSources",
        "kernelDataSources",
        "competitionDataSources",
        "modelDataSources",
        "dockerImage",
        "machineShape",
    ):
        if req.get(key):
            out[key] = req[key]
    return out


def _match_source(src: str, known: Iterable[str]) -> str | None:
    """The known source ``src`` names: exact, or a model source without its version (= latest)."""
    known = list(known)
    if src in known:
        return src
    versioned = sorted(
        (k for k in known if k.rsplit("/", 1)[0] == src and k.count("/") == 4),
        key=lambda k: int(k.rsplit("/", 1)[1]) if k.rsplit("/", 1)[1].isdigit() else -1,
    )
    return versioned[-1] if versioned else None


def _page_token(version: int, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{version}:{offset}".encode()).decode().rstrip("=")


def _parse_page_token(token: str) -> tuple[int, int] | None:
    try:
        version, offset = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        return int(version), int(offset)
    except (ValueError, UnicodeDecodeError):
        return None
