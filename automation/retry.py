"""The one retry policy every Kaggle API call goes through (tenacity).

What is retried: HTTP 429 (waiting what ``Retry-After`` asks, else a fallback: Kaggle does not always
send it, and its value is not reliable, kaggle-cli #938), 5xx (and 408; #1053), dropped connections
(``requests.ConnectionError``, ``ChunkedEncodingError``, ``http.client.RemoteDisconnected``, urllib3
``ProtocolError``) and timeouts. Never retried: 400/401/403/404 and anything else — those are answers,
not accidents. A 401 maps to :data:`EXIT_AUTH` (unauthenticated: the credentials). A 403 is **not**
mapped here: Kaggle answers 403 for a kernel the caller cannot see, existing or not (kaggle-cli PR #1201,
kaggle-api #548), so only the caller knows what it means (kaggle_client.py). Waits are exponential with
full jitter, bounded by a number of attempts and a total time; then the call fails with :data:`EXIT_API`.

The per-call deadline is not here: the SDK sends with no HTTP timeout, so :mod:`tunix_rt.kaggle_sdk`
mounts an adapter with socket timeouts on every session the SDK opens (see there for why not a thread).
A timed-out call raises ``requests.Timeout`` and comes back through this policy.

Environment overrides (for CI and tests, read in knobs.py): ``TUNIX_RT_RETRY_ATTEMPTS``,
``TUNIX_RT_RETRY_TOTAL_S``, ``TUNIX_RT_RETRY_BASE_S``, ``TUNIX_RT_RETRY_MAX_WAIT_S``, ``TUNIX_RT_API_TIMEOUT_S``.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import requests
import tenacity
from urllib3.exceptions import NameResolutionError, NewConnectionError, ProtocolError

from . import knobs
from .errors import EXIT_API, EXIT_AUTH, TunixRtError

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop. ``sleep`` is injectable so tests do not wait for real."""

    attempts: int = 8  # calls in total, the first included
    total_s: float = 600.0  # give up once this much time went into one call and its retries
    base_s: float = 1.0  # first backoff step (doubles each attempt, full jitter)
    max_wait_s: float = 60.0  # cap on one backoff wait
    retry_after_fallback_s: float = 10.0  # a 429 without a usable Retry-After header
    call_timeout_s: float = 60.0  # socket read timeout for one HTTP call (the per-call deadline)
    connect_timeout_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> RetryPolicy:
        """The default policy with ``TUNIX_RT_RETRY_*`` / ``TUNIX_RT_API_TIMEOUT_S`` applied."""
        base = cls()
        max_wait_s = knobs.number(knobs.RETRY_MAX_WAIT_S, base.max_wait_s)
        policy = replace(
            base,
            attempts=max(1, int(knobs.number(knobs.RETRY_ATTEMPTS, base.attempts))),
            total_s=knobs.number(knobs.RETRY_TOTAL_S, base.total_s),
            base_s=knobs.number(knobs.RETRY_BASE_S, base.base_s),
            max_wait_s=max_wait_s,
            retry_after_fallback_s=min(base.retry_after_fallback_s, max_wait_s),
            call_timeout_s=knobs.number(knobs.API_TIMEOUT_S, base.call_timeout_s),
        )
        return replace(policy, **overrides)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception stands for. kagglesdk raises ``HTTPError`` for a JSON body whose
    ``code`` is >= 400 even when the HTTP status is 200, so the body's code wins when present."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("code")
            if code is None and isinstance(body.get("error"), dict):
                code = body["error"].get("code")  # Google-style {"error": {"code": 429, …}}
            if isinstance(code, int) and code >= 400:
                return code
    except (ValueError, json.JSONDecodeError, RuntimeError, AttributeError):
        pass
    return getattr(response, "status_code", None)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
        if cur is None and seen[-1].args and isinstance(seen[-1].args[0], BaseException):
            cur = seen[-1].args[0]  # urllib3 wraps the cause in args (MaxRetryError.reason too)
        reason = getattr(seen[-1], "reason", None)
        if cur is None and isinstance(reason, BaseException):
            cur = reason
    return seen


def is_transient(exc: BaseException) -> bool:
    """True for a failure worth another try: 429, 5xx, dropped connection, timeout."""
    if isinstance(exc, requests.HTTPError):
        return http_status(exc) in RETRYABLE_STATUS
    if isinstance(exc, requests.RequestException):
        # ConnectionError (incl. ConnectTimeout/ProxyError), ReadTimeout, ChunkedEncodingError,
        # ContentDecodingError mid-stream: the network, not the answer.
        return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                                requests.exceptions.ChunkedEncodingError))
    return isinstance(exc, (http.client.RemoteDisconnected, ConnectionError, TimeoutError, ProtocolError))


def never_sent(exc: BaseException) -> bool:
    """True only when the request certainly never reached the server: the connection was refused or
    could not be opened (or a 429, which the server answers before doing anything). Used for pushes,
    where retrying anything else could create a second kernel version."""
    if isinstance(exc, requests.HTTPError):
        return http_status(exc) == 429
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    refused = (NewConnectionError, NameResolutionError, ConnectionRefusedError)
    return any(isinstance(e, refused) for e in _chain(exc))


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a 429 asks us to wait (``Retry-After`` as delta-seconds or an HTTP date), else None."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    raw = (getattr(response, "headers", None) or {}).get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_QUERY = re.compile(r"\?[^\s'\")]*")


def describe(exc: BaseException) -> str:
    """One short line naming a failure, without bodies or query strings (output-file URLs are signed)."""
    status = http_status(exc)
    first = _QUERY.sub("?…", str(exc).splitlines()[0] if str(exc) else "")[:160]
    if status is not None:
        return f"HTTP {status}" + (f" ({first})" if first and str(status) not in first[:3] else "")
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    jitter = tenacity.wait_random_exponential(multiplier=policy.base_s, max=policy.max_wait_s)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and http_status(exc) == 429:
            after = retry_after_s(exc)
            return policy.retry_after_fallback_s if after is None else after
        return float(jitter(state))

    return wait


def call(
    fn: Callable[..., T],
    *args: Any,
    what: str,
    policy: RetryPolicy | None = None,
    retry_if: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)`` under the policy; ``what`` names the call in messages.

    Raises :class:`TunixRtError` with :data:`EXIT_AUTH` for a 401 and :data:`EXIT_API` once retries are
    spent. Other exceptions (400/403/404 ``HTTPError``, ``ValueError`` from the SDK's own checks) propagate
    unchanged so callers can treat e.g. a 403 on a kernel as an answer.
    """
    policy = policy or RetryPolicy.from_env()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            wait_s = state.next_action.sleep if state.next_action else 0.0
            on_retry(f"{what}: {describe(exc)}; retry {state.attempt_number}/{policy.attempts - 1} "
                     f"in {wait_s:.1f} s")

    retrying = tenacity.Retrying(
        sleep=policy.sleep,
        stop=tenacity.stop_after_attempt(policy.attempts) | tenacity.stop_after_delay(policy.total_s),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(retry_if),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except requests.HTTPError as exc:
        status = http_status(exc)
        if status == 401:
            raise TunixRtError(f"{what}: Kaggle rejected the credentials (HTTP 401)", EXIT_AUTH) from exc
        if retry_if(exc):
            raise TunixRtError(f"{what} still failing after retries: {describe(exc)}", EXIT_API) from exc
        raise
    except Exception as exc:
        if retry_if(exc):
            raise TunixRtError(f"{what} still failing after retries: {describe(exc)}", EXIT_API) from exc
        raise
