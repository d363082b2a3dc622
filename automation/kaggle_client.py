"""The client layer over the real ``kaggle`` package (``KaggleApi``, kaggle 2.2.5 / kagglesdk 0.1.38).

* ``kaggle`` is imported lazily, and its import-time side effects are contained: ``kaggle/__init__.py``
  runs ``authenticate()`` at import, which prints auth help to stdout, creates a config folder and, with an
  access token, calls the network with no timeout. We import it once with a scratch HOME/KAGGLE_CONFIG_DIR
  and no ``KAGGLE_*`` credentials, output swallowed, then authenticate our own instance against the real
  environment, re-reading what the class computed at import (config dir, ``KAGGLE_API_ENVIRONMENT``).
* Credentials are looked for before any network call (same order as the client: access token, then
  ``KAGGLE_USERNAME``/``KAGGLE_KEY`` over ``kaggle.json`` in the config dir, then OAuth credentials);
  missing → :data:`EXIT_AUTH` with one line saying where to put them. Their values are registered for
  redaction and never printed.
* The per-call deadline: the SDK opens a new ``requests.Session`` per call and sends with no timeout. We
  mount an ``HTTPAdapter`` with (connect, read) socket timeouts on each of those sessions
  (:class:`_TimeoutAdapter`). We chose socket timeouts over running calls in a worker thread because a
  timed-out socket is closed: nothing keeps running behind our back. With a thread, an abandoned push
  could still land after we decided it failed and then a second version would be created.
* The client's own environment configuration is honoured: ``HTTP(S)_PROXY``/``NO_PROXY`` (requests reads
  them) and ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (as the client does; TEST/STAGING are ignored by
  ``KaggleApi``). That is how the emulator is reached (recipe A in docs/kaggle.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import retry
from .errors import EXIT_API, EXIT_AUTH, TunixRtError
from .redact import Redactor

WHERE_CREDENTIALS = (
    "set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json (kaggle.com → Settings → API → Create New Token) "
    "in {config_dir} with chmod 600, or set KAGGLE_API_TOKEN"
)


def config_dir() -> Path:
    """The kaggle client's config folder: KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else
    $XDG_CONFIG_HOME/kaggle or ~/.config/kaggle (the client's own order; evaluated now, not at import)."""
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        return Path(env)
    home_dir = Path(os.path.expanduser("~")) / ".kaggle"
    if home_dir.exists() or not sys.platform.startswith("linux"):
        return home_dir
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "kaggle"


@dataclass(frozen=True)
class Credentials:
    """Where the credentials were found (never their values, except for redaction)."""

    source: str  # e.g. "KAGGLE_USERNAME/KAGGLE_KEY", "/home/u/.kaggle/kaggle.json", "KAGGLE_API_TOKEN"
    username: str | None
    secrets: tuple[str, ...]  # values to redact from anything we print or write


def find_credentials() -> Credentials:
    """Find credentials the way the client will, without any network call. Missing → EXIT_AUTH."""
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        value = Path(token).read_text().strip() if Path(token).is_file() else token
        return Credentials("KAGGLE_API_TOKEN", None, (value,) if value else ())
    for name in ("access_token", "access_token.txt"):
        path = Path(os.path.expanduser("~/.kaggle")) / name
        if path.is_file() and path.read_text().strip():
            return Credentials(str(path), None, (path.read_text().strip(),))
    cfg = config_dir() / "kaggle.json"
    file_values: dict[str, Any] = {}
    if cfg.is_file():
        try:
            import json

            file_values = json.loads(cfg.read_text(encoding="utf-8") or "{}") or {}
        except (OSError, ValueError) as exc:
            raise TunixRtError(f"{cfg}: unreadable kaggle.json ({type(exc).__name__}); "
                               + WHERE_CREDENTIALS.format(config_dir=cfg.parent), EXIT_AUTH) from exc
    user = os.environ.get("KAGGLE_USERNAME") or file_values.get("username")
    key = os.environ.get("KAGGLE_KEY") or file_values.get("key")
    if user and key:
        source = "KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(cfg)
        return Credentials(source, str(user), (str(key),))
    oauth = Path(os.path.expanduser("~/.kaggle/credentials.json"))
    if oauth.is_file():
        return Credentials(str(oauth), None, ())
    raise TunixRtError("no Kaggle credentials found: " + WHERE_CREDENTIALS.format(config_dir=config_dir()),
                       EXIT_AUTH)


@contextlib.contextmanager
def _contained_import() -> Iterator[None]:
    """Import-time side effects of ``kaggle`` go to a scratch folder and a discarded buffer."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="tunix-rt-kaggle-import-") as scratch:
        for key in list(os.environ):
            if key.startswith("KAGGLE_"):
                del os.environ[key]
        os.environ["KAGGLE_CONFIG_DIR"] = scratch
        os.environ["HOME"] = scratch  # the import-time authenticate() reads ~/.kaggle/access_token
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _kaggle_api_class() -> type:
    if "kaggle.api.kaggle_api_extended" not in sys.modules:
        with _contained_import():
            import kaggle  # noqa: F401  (its __init__ runs authenticate(); contained above)
    from kaggle.api.kaggle_api_extended import KaggleApi

    return KaggleApi


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a (connect, read) timeout unless the caller passed one."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__(max_retries=0)  # retries are ours (retry.py), not urllib3's
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def _make_api(timeout: tuple[float, float]) -> Any:
    base = _kaggle_api_class()

    class TimedKaggleApi(base):  # type: ignore[misc,valid-type]
        """KaggleApi whose SDK sessions carry socket timeouts (the SDK sets none)."""

        def build_kaggle_client(self):  # noqa: ANN202 - the SDK's own type
            client = super().build_kaggle_client()
            http_client = client.http_client()
            http_client._init_session()  # create the session now, so the adapter is on it for every call
            adapter = _TimeoutAdapter(timeout)
            http_client._session.mount("http://", adapter)
            http_client._session.mount("https://", adapter)
            return client

    api = TimedKaggleApi()
    # The class computed these at import, under the contained environment; use the real one.
    api.config_dir = str(config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    # Never "--verbose": the SDK would print request headers, Authorization included.
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    return api


def platform_for(url: str | None) -> str:
    """"kaggle" when the kernel lives on kaggle.com (and the client talks to production), else "emulator"."""
    host = (urlsplit(url or "").hostname or "").lower()
    on_kaggle = host == "kaggle.com" or host.endswith(".kaggle.com")
    if on_kaggle and os.environ.get("KAGGLE_API_ENVIRONMENT", "PROD") == "PROD":
        return "kaggle"
    return "emulator"


class KaggleClient:
    """One authenticated ``KaggleApi`` plus the retry policy; every method is one retried API call."""

    def __init__(self, api: Any, credentials: Credentials, policy: retry.RetryPolicy,
                 warn: Callable[[str], None]) -> None:
        self.api = api
        self.credentials = credentials
        self.policy = policy
        self._warn = warn
        self.redactor = Redactor(credentials.secrets)
        self.calls = 0  # API calls made (each retry counts)

    def warn(self, message: str) -> None:
        self._warn(self.redactor.redact(message))

    def _call(self, fn: Callable[..., Any], *args: Any, what: str,
              retry_if: Callable[[BaseException], bool] = retry.is_transient, **kwargs: Any) -> Any:
        def counted(*a: Any, **k: Any) -> Any:
            self.calls += 1
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink):  # the SDK prints warnings; keep stdout ours
                    return fn(*a, **k)
            finally:
                for line in sink.getvalue().splitlines():
                    if line.strip():
                        self.warn(f"kaggle: {line.strip()}")

        return retry.call(counted, *args, what=what, policy=self.policy, retry_if=retry_if,
                          on_retry=self.warn, **kwargs)

    # --- kernels calls -------------------------------------------------------------------------------
    def push(self, folder: Path, *, timeout_s: int | None, machine_shape: str | None) -> Any:
        """SaveKernel. Retried only when the request certainly never reached Kaggle; any other failure
        propagates so the caller can look whether the version was created (push.py)."""
        return self._call(self.api.kernels_push, str(folder), timeout=str(timeout_s) if timeout_s else None,
                          acc=machine_shape, what="push (SaveKernel)", retry_if=retry.never_sent)

    def status(self, kernel_ref: str, version: int | None) -> tuple[str, str]:
        """GetKernelSessionStatus of ``owner/slug/vN`` → (status name, failure message)."""
        ref = f"{kernel_ref}/{version}" if version else kernel_ref
        resp = self._call(self.api.kernels_status, ref, what=f"status of {ref}")
        status = getattr(resp.status, "name", str(resp.status))
        return status, resp.failure_message or ""

    def current_version(self, kernel_ref: str) -> int:
        """GetKernel → the kernel's current version number; 0 when the kernel does not exist yet."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

        owner, slug = kernel_ref.split("/", 1)

        def get() -> int:
            with self.api.build_kaggle_client() as client:
                request = ApiGetKernelRequest()
                request.user_name = owner
                request.kernel_slug = slug
                response = client.kernels.kernels_api_client.get_kernel(request)
            return int(getattr(response.metadata, "current_version_number", 0) or 0)

        try:
            return int(self._call(get, what=f"GetKernel {kernel_ref}"))
        except requests.HTTPError as exc:
            if retry.http_status(exc) == 404:
                return 0
            raise TunixRtError(f"GetKernel {kernel_ref}: {retry.describe(exc)}", EXIT_API) from exc

    def output_page(self, kernel_ref: str, version: int, page_token: str | None, page_size: int) -> Any:
        """One ListKernelSessionOutput page of ``owner/slug/vN`` (files, log, next_page_token)."""
        from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

        owner, slug = kernel_ref.split("/", 1)

        def page() -> Any:
            with self.api.build_kaggle_client() as client:
                request = ApiListKernelSessionOutputRequest()
                request.user_name = owner
                request.kernel_slug = slug
                request.version_label = f"v{version}"
                request.page_size = page_size
                request.page_token = page_token or ""
                return client.kernels.kernels_api_client.list_kernel_session_output(request)

        return self._call(page, what=f"output list of {kernel_ref}/v{version}")

    def download(self, url: str, dest: Path) -> int:
        """GET one output file (streamed) into ``dest`` atomically; returns its size. Retried."""
        timeout = (self.policy.connect_timeout_s, self.policy.call_timeout_s)

        def get() -> int:
            self.calls += 1
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
                size = 0
                try:
                    with os.fdopen(fd, "wb") as fh:
                        for chunk in response.iter_content(chunk_size=1 << 20):
                            fh.write(chunk)
                            size += len(chunk)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            return size

        try:
            return int(retry.call(get, what=f"download {dest.name}", policy=self.policy, on_retry=self.warn))
        except requests.HTTPError as exc:
            raise TunixRtError(f"download {dest.name}: {retry.describe(exc)}", EXIT_API) from exc

    def log_stream(self, kernel_ref: str, version: int) -> Iterator[dict[str, Any]]:
        """The live log stream (SSE) of ``owner/slug/vN``; it ends when the session ends. Not retried."""
        self.calls += 1
        return iter(self.api.kernels_logs_stream(f"{kernel_ref}/{version}"))


def connect(*, policy: retry.RetryPolicy | None = None, warn: Callable[[str], None] | None = None,
            read_timeout_s: float | None = None) -> KaggleClient:
    """Find credentials (no network), import kaggle with its side effects contained, authenticate.

    Missing or rejected credentials → :class:`TunixRtError` with :data:`EXIT_AUTH`.
    """
    policy = policy or retry.RetryPolicy.from_env()
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    creds = find_credentials()
    api = _make_api((policy.connect_timeout_s, read_timeout_s or policy.call_timeout_s))
    sink = io.StringIO()

    def authenticate() -> None:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            api.authenticate()

    try:
        retry.call(authenticate, what="authenticate", policy=policy, on_retry=warn)
    except SystemExit as exc:
        raise TunixRtError(f"Kaggle did not accept the credentials from {creds.source}; "
                           + WHERE_CREDENTIALS.format(config_dir=config_dir()), EXIT_AUTH) from exc
    for line in sink.getvalue().splitlines():
        if "readable by other users" in line:
            warn(Redactor(creds.secrets).redact(line.strip()))
    return KaggleClient(api, creds, policy, warn)

