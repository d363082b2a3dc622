"""Plumbing around the real ``kaggle`` client (2.2.5 / kagglesdk 0.1.38), used by kaggle_client.py.

* ``kaggle`` is imported lazily, and its import-time side effects are contained: ``kaggle/__init__.py``
  runs ``authenticate()`` at import, which prints auth help to stdout, creates a config folder and, with an
  access token, calls the network with no timeout. We import it once with a scratch HOME/KAGGLE_CONFIG_DIR
  and no ``KAGGLE_*`` credentials, output swallowed; our own instance then authenticates against the real
  environment, re-reading what the class computed at import (config dir, ``KAGGLE_API_ENVIRONMENT``).
* The SDK opens a new ``requests.Session`` per call and sends with no timeout (kagglesdk
  ``kaggle_http_client.py``). Every such session gets an ``HTTPAdapter`` with (connect, read) socket
  timeouts (:class:`_TimeoutAdapter`), which also counts every request sent (sign-in, retries and log-stream
  reconnects included) for the call budget. Socket timeouts rather than a worker thread: a timed-out socket
  is closed, so an abandoned push cannot land behind our back and create a second version.
* Two client behaviours are corrected in a subclass (:func:`make_api`): after the client fell back from a
  rejected token to the legacy key, kagglesdk would still send the token; and its log-stream reader stops
  alike at ``END_OF_LOG`` and at a cut connection (:class:`LogStream` tells them apart).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .credentials import config_dir


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


class CallCounter:
    """Requests sent, from any thread (the log-stream watcher shares nothing else with the poll loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a (connect, read) timeout unless the caller passed one, and counts it."""

    def __init__(self, timeout: tuple[float, float], counter: CallCounter) -> None:
        super().__init__(max_retries=0)  # retries are ours (retry.py), not urllib3's
        self._timeout = timeout
        self._counter = counter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        self._counter.add()
        return super().send(request, **kwargs)


_STREAM_END = threading.local()  # set by the SSE/blob readers below, read by LogStream (same thread)


def make_api(timeout: tuple[float, float], counter: CallCounter) -> Any:
    base = _kaggle_api_class()

    class TimedKaggleApi(base):  # type: ignore[misc,valid-type]
        """KaggleApi whose SDK sessions carry socket timeouts and a request counter."""

        def build_kaggle_client(self):  # noqa: ANN202 - the SDK's own type
            client = super().build_kaggle_client()
            http_client = client.http_client()
            http_client._init_session()  # create the session now, so the adapter is on it for every call
            adapter = _TimeoutAdapter(timeout, counter)
            http_client._session.mount("http://", adapter)
            http_client._session.mount("https://", adapter)
            values = self.config_values
            if str(values.get(self.CONFIG_NAME_AUTH_METHOD)) == "LEGACY_API_KEY" and values.get("key"):
                # The client fell back to the legacy key because the token was not accepted, but kagglesdk's
                # _try_fill_auth (kaggle_http_client.py) picks the token up from the environment again and
                # would send it as Bearer. Send what the client chose.
                http_client._session.auth = (values.get(self.CONFIG_NAME_USER), values.get("key"))
            return client

        def _iter_sse_events(self, response):  # noqa: ANN001, ANN202 - the client's own signature
            """The client's SSE reader stops at ``END_OF_LOG`` and also when the connection just ends;
            remember which (a stream that ends without it was cut: kaggle-cli PR #999)."""
            original = response.iter_lines
            sentinel = self._LOG_STREAM_END_SENTINEL

            def lines(*args: Any, **kwargs: Any) -> Iterator[Any]:
                for raw in original(*args, **kwargs):
                    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                    if text and text.startswith("data:") and text[len("data:"):].strip() == sentinel:
                        _STREAM_END.finished = True
                    yield raw

            response.iter_lines = lines
            yield from super()._iter_sse_events(response)

        def _iter_blob_lines(self, response):  # noqa: ANN001, ANN202
            """A non-SSE answer is the finished session's persisted log (kernels_logs_stream docstring)."""
            yield from super()._iter_blob_lines(response)
            _STREAM_END.finished = True

    api = TimedKaggleApi()
    # The class computed these at import, under the contained environment; use the real one.
    api.config_dir = str(config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    # Never "--verbose": the SDK would print request headers, Authorization included.
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    return api


class LogStream:
    """One connection to the kernel's live log stream (``kernels_logs_stream``). Iterate it for events;
    afterwards ``finished`` says whether it ended with ``END_OF_LOG`` or the finished session's blob (the
    session is over) rather than being cut."""

    def __init__(self, api: Any, ref: str, version: int) -> None:
        self._api, self._ref, self._version = api, ref, version
        self.finished = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        _STREAM_END.finished = False
        # No stdout redirect here: this runs in the watcher thread, and redirect_stdout is process-wide.
        yield from self._api.kernels_logs_stream(f"{self._ref}/{self._version}")
        self.finished = bool(getattr(_STREAM_END, "finished", False))


