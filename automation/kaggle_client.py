"""The client layer over the real ``kaggle`` package (``KaggleApi``, kaggle 2.2.5 / kagglesdk 0.1.38):
one authenticated client, every method one call under the retry policy (retry.py). The plumbing — import
containment, socket timeouts, the request counter, the SDK corrections — is in kaggle_sdk.py.

* Credentials (:mod:`tunix_rt.credentials`) are found before any network call, in the client's order;
  missing → :data:`EXIT_AUTH`. After the client authenticated we check them **once** with a call where a
  401/403 can only mean bad credentials (:meth:`KaggleClient.verify_credentials`): an API token was already
  checked by the client's own ``IntrospectToken``; a legacy key is checked with the account's own GPU/TPU
  quota (``GetAcceleratorQuotaStatistics``). After that a 403 is an answer about a kernel, not about the
  credentials: Kaggle answers 403 for a kernel the caller cannot see, whether it exists or not (kaggle-cli
  PR #1201's table: GetKernel on an unknown slug → HTTP 403; the 2.2.5 client's own message "Permission
  'kernels.get' was denied. The most likely cause is a wrong kernel slug"; a Kaggle maintainer in
  kaggle-api #548: "403 can in some cases also mean 'not found'"). Such answers raise :class:`NotVisible`
  and the caller (push/wait/pull) says what it means there.
* The client's own environment configuration is honoured: ``HTTP(S)_PROXY``/``NO_PROXY`` (requests reads
  them) and ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (as the client does; TEST/STAGING are ignored by
  ``KaggleApi``). That is how the emulator is reached (recipe A in docs/kaggle.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from . import credentials as creds_mod
from . import retry
from .credentials import Credentials, config_dir, find_credentials  # noqa: F401  (re-exported)
from .errors import EXIT_API, EXIT_AUTH, EXIT_USAGE, TunixRtError
from .kaggle_sdk import CallCounter, LogStream, _kaggle_api_class, make_api  # noqa: F401  (re-exported)
from .redact import Redactor

WHERE_CREDENTIALS = creds_mod.WHERE_CREDENTIALS
NOT_VISIBLE = frozenset({403, 404})  # what Kaggle answers for a kernel/version the caller cannot see
EXPIRED_URL = frozenset({400, 403})  # what an expired signed output URL answers (GCS ExpiredToken / denied)


class NotVisible(Exception):
    """Kaggle answered 403/404 about a kernel or version: it does not exist, or this account cannot see it
    (Kaggle does not say which, see the module docstring)."""

    def __init__(self, what: str, http_status: int) -> None:
        super().__init__(f"{what}: HTTP {http_status}")
        self.what = what
        self.http_status = http_status


class UrlExpired(Exception):
    """A signed output-file URL answered 400/403: it expired; list the page again for a fresh one."""

    def __init__(self, name: str, http_status: int) -> None:
        super().__init__(f"download {name}: HTTP {http_status} (signed URL expired)")
        self.http_status = http_status


def not_visible_error(ref: str, http_status: int, user: str | None, version: int | None = None) -> TunixRtError:
    """The one-line error for a kernel this account cannot see, outside the windows where that is expected.
    Never "check your credentials": those were verified (exit 4 is for them)."""
    what = f"{ref} v{version}" if version else ref
    who = f"the account {user!r}" if user else "this account"
    return TunixRtError(f"Kaggle answers HTTP {http_status} for {what}: {who} cannot see that kernel "
                        "(wrong owner or slug in --kernel-id, or a private kernel of someone else)", EXIT_USAGE)


def platform_for(url: str | None) -> str:
    """"kaggle" when the kernel lives on kaggle.com (and the client talks to production), else "emulator"."""
    host = (urlsplit(url or "").hostname or "").lower()
    on_kaggle = host == "kaggle.com" or host.endswith(".kaggle.com")
    if on_kaggle and os.environ.get("KAGGLE_API_ENVIRONMENT", "PROD") == "PROD":
        return "kaggle"
    return "emulator"


@dataclass(frozen=True)
class KernelInfo:
    """What GetKernel says about a kernel (``current_version`` may lag: see kernel_versions.py)."""

    title: str
    current_version: int


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str


class KaggleClient:
    """One authenticated ``KaggleApi`` plus the retry policy; every method is one retried API call."""

    def __init__(self, api: Any, credentials: Credentials, policy: retry.RetryPolicy,
                 warn: Callable[[str], None], counter: CallCounter | None = None) -> None:
        self.api = api
        self.credentials = credentials
        self.policy = policy
        self._warn = warn
        self.redactor = Redactor(credentials.secrets)
        self.counter = counter or CallCounter()
        self.quota_answer: Any = None  # the verification call's answer, reused by the quota pre-flight
        self.quota_problem: str | None = None  # why the quota could not be read (warned once)
        self.sign_in_calls = 0  # requests connect() spent (authentication, the credential check)

    @property
    def calls(self) -> int:
        """Requests sent so far (each retry, the sign-in and every log-stream connection count)."""
        return self.counter.value

    @property
    def username(self) -> str | None:
        return self.credentials.username

    def warn(self, message: str) -> None:
        self._warn(self.redactor.redact(message))

    def _call(self, fn: Callable[..., Any], *args: Any, what: str,
              retry_if: Callable[[BaseException], bool] = retry.is_transient, **kwargs: Any) -> Any:
        def quiet(*a: Any, **k: Any) -> Any:
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink):  # the SDK prints warnings; keep stdout ours
                    return fn(*a, **k)
            finally:
                for line in sink.getvalue().splitlines():
                    if line.strip():
                        self.warn(f"kaggle: {line.strip()}")

        try:
            return retry.call(quiet, *args, what=what, policy=self.policy, retry_if=retry_if,
                              on_retry=self.warn, **kwargs)
        except TunixRtError as exc:
            if exc.exit_code == EXIT_AUTH:  # a 401: name the credentials really used
                raise TunixRtError(f"{what}: Kaggle rejected the credentials from {self.credentials.source} "
                                   f"(HTTP 401); {creds_mod.where_to_put_them()}", EXIT_AUTH) from exc
            raise

    def _rpc(self, call: Callable[[Any], Any], *, what: str, visible: bool = False) -> Any:
        """``call(sdk_client)`` under the retry policy. ``visible``: 403/404 raise :class:`NotVisible`."""

        def once() -> Any:
            with self.api.build_kaggle_client() as client:
                return call(client)

        try:
            return self._call(once, what=what)
        except requests.HTTPError as exc:
            status = retry.http_status(exc)
            if visible and status in NOT_VISIBLE:
                raise NotVisible(what, int(status or 0)) from exc
            raise

    # --- credentials ----------------------------------------------------------------------------------
    def verify_credentials(self) -> None:
        """The one credential check. A token was checked by the client's IntrospectToken at sign-in (and
        OAuth by its token refresh); a legacy key is checked with the account's own quota, where a 401/403
        can only mean the key is rejected. Any other failure (network, unsupported endpoint): warn, go on."""
        if self.credentials.kind != creds_mod.LEGACY:
            return
        try:
            self.quota_answer = self.quota()
        except TunixRtError as exc:
            if exc.exit_code == EXIT_AUTH:
                raise
            self.quota_problem = exc.message
        except requests.HTTPError as exc:
            status = retry.http_status(exc)
            if status in (401, 403):
                raise TunixRtError(f"Kaggle rejected the legacy API key from {self.credentials.source} "
                                   f"(HTTP {status} on the account's own GPU/TPU quota); "
                                   + creds_mod.where_to_put_them(), EXIT_AUTH) from exc
            self.quota_problem = f"GetAcceleratorQuotaStatistics: {retry.describe(exc)}"
        if self.quota_problem:
            self.warn(f"could not check the credentials from {self.credentials.source} nor read the GPU/TPU "
                      f"quota ({self.quota_problem}); going on")

    # --- kernels calls -------------------------------------------------------------------------------
    def push(self, folder: Path, *, timeout_s: int | None, machine_shape: str | None) -> Any:
        """SaveKernel. Retried only when the request certainly never reached Kaggle; any other failure
        propagates so the caller can look whether the version was created (push.py)."""
        return self._call(self.api.kernels_push, str(folder), timeout=str(timeout_s) if timeout_s else None,
                          acc=machine_shape, what="push (SaveKernel)", retry_if=retry.never_sent)

    def status(self, kernel_ref: str, version: int | None) -> tuple[str, str]:
        """GetKernelSessionStatus of ``owner/slug`` ``versionLabel vN`` → (status name, failure message).
        Called through the SDK directly: ``kernels_status`` turns 401 and 403 alike into a ValueError."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusRequest

        owner, slug = kernel_ref.split("/", 1)
        request = ApiGetKernelSessionStatusRequest()
        request.user_name, request.kernel_slug = owner, slug
        if version:
            request.version_label = f"v{version}"  # a bare number answers 404 (kaggle-cli PR #1201)
        label = f"{kernel_ref}/v{version}" if version else kernel_ref
        resp = self._rpc(lambda c: c.kernels.kernels_api_client.get_kernel_session_status(request),
                         what=f"status of {label}", visible=True)
        status = getattr(resp.status, "name", str(resp.status))
        return status, resp.failure_message or ""

    def get_kernel(self, kernel_ref: str, version: int | None = None) -> KernelInfo | None:
        """GetKernel (of ``versionLabel vN`` when given) → title and ``currentVersionNumber``; None when
        Kaggle answers 403/404 (the kernel or version does not exist, or this account cannot see it)."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

        owner, slug = kernel_ref.split("/", 1)
        request = ApiGetKernelRequest()
        request.user_name, request.kernel_slug = owner, slug
        if version:
            request.version_label = f"v{version}"  # PR #1201: version_label "v1" → version 1's source
        what = f"GetKernel {kernel_ref}" + (f" v{version}" if version else "")
        try:
            resp = self._rpc(lambda c: c.kernels.kernels_api_client.get_kernel(request), what=what, visible=True)
        except NotVisible:
            return None
        meta = resp.metadata
        return KernelInfo(str(getattr(meta, "title", "") or ""),
                          int(getattr(meta, "current_version_number", 0) or 0))

    def current_version(self, kernel_ref: str) -> int:
        """GetKernel → ``currentVersionNumber``; 0 when the kernel does not exist (or is not visible)."""
        info = self.get_kernel(kernel_ref)
        return info.current_version if info else 0

    def output_page(self, kernel_ref: str, version: int, page_token: str | None, page_size: int) -> Any:
        """One ListKernelSessionOutput page of ``owner/slug/vN`` (files, log, next_page_token)."""
        from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

        owner, slug = kernel_ref.split("/", 1)
        request = ApiListKernelSessionOutputRequest()
        request.user_name, request.kernel_slug = owner, slug
        request.version_label = f"v{version}"
        request.page_size = page_size
        request.page_token = page_token or ""
        return self._rpc(lambda c: c.kernels.kernels_api_client.list_kernel_session_output(request),
                         what=f"output list of {kernel_ref}/v{version}", visible=True)

    def quota(self) -> Any:
        """GetAcceleratorQuotaStatistics (the client's ``quota_view``, kaggle-cli PR #1029): the weekly
        GPU/TPU quota, time used/reserved/allowed, refresh time."""
        return self._call(self.api.quota_view, what="GetAcceleratorQuotaStatistics")

    def model_instance(self, instance: str) -> Any:
        """GetModelInstance of ``owner/model/framework/instance`` (the client's ``model_instance_get``)."""
        return self._call(self.api.model_instance_get, instance, what=f"GetModelInstance {instance}")

    def download(self, url: str, dest: Path, name: str | None = None) -> Downloaded:
        """GET one output file (streamed) into ``dest`` atomically; its size and sha256. Retried when the
        network fails or the body comes short; a 400/403 (an expired signed URL) raises :class:`UrlExpired`."""
        timeout = (self.policy.connect_timeout_s, self.policy.call_timeout_s)
        label = name or dest.name

        def get() -> Downloaded:
            self.counter.add()
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                expected = response.headers.get("Content-Length")
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
                size, digest = 0, hashlib.sha256()
                try:
                    with os.fdopen(fd, "wb") as fh:
                        for chunk in response.iter_content(chunk_size=1 << 20):
                            fh.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                    if expected is not None and expected.isdigit() and int(expected) != size:
                        raise requests.exceptions.ChunkedEncodingError(
                            f"short body: {size} of {expected} bytes")
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            return Downloaded(size, digest.hexdigest())

        try:
            return retry.call(get, what=f"download {label}", policy=self.policy, on_retry=self.warn)
        except requests.HTTPError as exc:
            status = retry.http_status(exc)
            if status in EXPIRED_URL:
                raise UrlExpired(label, int(status or 0)) from exc
            raise TunixRtError(f"download {label}: {retry.describe(exc)}", EXIT_API) from exc

    def log_stream(self, kernel_ref: str, version: int) -> LogStream:
        """One connection to the live log stream (SSE) of ``owner/slug/vN``. Not retried: the watcher
        (log_stream.py) reconnects."""
        return LogStream(self.api, kernel_ref, version)


def connect(*, policy: retry.RetryPolicy | None = None, warn: Callable[[str], None] | None = None,
            read_timeout_s: float | None = None, verify: bool = True) -> KaggleClient:
    """Find credentials (no network), import kaggle with its side effects contained, authenticate, and
    (``verify``) check the credentials once (:meth:`KaggleClient.verify_credentials`).

    Missing or rejected credentials → :class:`TunixRtError` with :data:`EXIT_AUTH`, naming their source.
    """
    policy = policy or retry.RetryPolicy.from_env()
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    found = find_credentials()
    counter = CallCounter()
    api = make_api((policy.connect_timeout_s, read_timeout_s or policy.call_timeout_s), counter)
    sink = io.StringIO()
    redactor = Redactor(found.secrets)

    def authenticate() -> None:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            api.authenticate()

    try:
        retry.call(authenticate, what="authenticate", policy=policy, on_retry=warn)
    except SystemExit as exc:
        tried = found.source + (f" and then {found.fallback}" if found.fallback else "")
        detail = " (an API token that is expired or revoked?)" if found.kind == creds_mod.TOKEN else ""
        raise TunixRtError(f"Kaggle did not accept the credentials from {tried}{detail}; "
                           + creds_mod.where_to_put_them(), EXIT_AUTH) from exc
    except TunixRtError as exc:
        if exc.exit_code == EXIT_AUTH:
            raise TunixRtError(f"Kaggle rejected the credentials from {found.source} (HTTP 401); "
                               + creds_mod.where_to_put_them(), EXIT_AUTH) from exc
        raise
    for line in sink.getvalue().splitlines():
        if "readable by other users" in line:
            warn(redactor.redact(line.strip()))
    used = creds_mod.source_used(api, found)
    if found.kind == creds_mod.TOKEN and used.kind != creds_mod.TOKEN:
        warn(f"Kaggle did not accept the API token from {found.source} (expired or revoked?); using "
             f"{used.source} instead, as the kaggle client does")
    client = KaggleClient(api, used, policy, warn, counter)
    if verify:
        client.verify_credentials()
    client.sign_in_calls = client.calls
    return client
