"""The one retry policy: what is retried, how long it waits, what it turns into (fast: sleep is injected)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from tunix_rt import retry
from tunix_rt.errors import EXIT_API, EXIT_AUTH, TunixRtError


def http_error(status: int, body: dict | None = None, headers: dict | None = None,
               http_status: int | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = http_status or status
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    response._content = json.dumps(body if body is not None else {"code": status, "message": "x"}).encode()
    return requests.HTTPError(f"{status} error", response=response)


class Flaky:
    """Raises the given exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def policy(slept: list[float]) -> retry.RetryPolicy:
    return retry.RetryPolicy(attempts=5, base_s=1.0, max_wait_s=8.0, sleep=slept.append)


def test_429_waits_what_retry_after_says(policy: retry.RetryPolicy, slept: list[float]) -> None:
    google_429 = {"error": {"code": 429, "message": "Too many requests", "status": "RESOURCE_EXHAUSTED"}}
    fn = Flaky(http_error(429, google_429, {"Retry-After": "7"}),
               http_error(429, google_429, {"Retry-After": "3"}))
    assert retry.call(fn, what="status", policy=policy) == "ok"
    assert fn.calls == 3 and slept == [7.0, 3.0]


def test_429_without_header_uses_the_fallback(slept: list[float]) -> None:
    policy = retry.RetryPolicy(retry_after_fallback_s=4.0, sleep=slept.append)
    assert retry.call(Flaky(http_error(429)), what="s", policy=policy) == "ok"
    assert slept == [4.0]


def test_5xx_in_a_200_body_and_dropped_connections_back_off_with_jitter(policy: retry.RetryPolicy,
                                                                       slept: list[float]) -> None:
    fn = Flaky(http_error(500, http_status=200), http_error(503), requests.ConnectionError("reset"),
               requests.exceptions.ChunkedEncodingError("cut"))
    assert retry.call(fn, what="s", policy=policy) == "ok"
    assert fn.calls == 5 and len(slept) == 4
    assert all(0 <= s <= 8.0 for s in slept)


@pytest.mark.parametrize("status", [400, 404])
def test_400_and_404_are_answers_not_retried(policy: retry.RetryPolicy, status: int) -> None:
    fn = Flaky(http_error(status))
    with pytest.raises(requests.HTTPError):
        retry.call(fn, what="s", policy=policy)
    assert fn.calls == 1


DENIED = ValueError("Cannot access kernel 'a/b' (Permission 'kernels.get' was denied)")


def test_401_is_rejected_credentials_exit_4_at_once(policy: retry.RetryPolicy) -> None:
    fn = Flaky(http_error(401))
    with pytest.raises(TunixRtError) as info:
        retry.call(fn, what="status", policy=policy)
    assert info.value.exit_code == EXIT_AUTH and fn.calls == 1


@pytest.mark.parametrize("error", [http_error(403, {"code": 403, "message": "Permission 'kernels.get' was denied"}),
                                   DENIED])
def test_403_is_an_answer_for_the_caller_not_a_credentials_verdict(policy: retry.RetryPolicy,
                                                                   error: BaseException) -> None:
    """Kaggle answers 403 for a kernel the caller cannot see (PR #1201): not retried, not exit 4 here;
    the caller knows whether it means "does not exist yet" (kaggle_client.NotVisible)."""
    fn = Flaky(error)
    with pytest.raises(type(error)):
        retry.call(fn, what="status", policy=policy)
    assert fn.calls == 1


def test_bounded_then_exit_5(policy: retry.RetryPolicy, slept: list[float]) -> None:
    fn = Flaky(*[http_error(503)] * 10)
    with pytest.raises(TunixRtError) as info:
        retry.call(fn, what="status of a/b/3", policy=policy)
    assert info.value.exit_code == EXIT_API and "status of a/b/3" in info.value.message
    assert fn.calls == policy.attempts and len(slept) == policy.attempts - 1


def test_never_sent_tells_refused_from_ambiguous() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert retry.never_sent(refused.value) and retry.is_transient(refused.value)
    assert not retry.never_sent(requests.ReadTimeout("read timed out"))
    assert not retry.never_sent(http_error(500))
    assert retry.never_sent(http_error(429))


@pytest.fixture
def stalled_server() -> Iterator[int]:
    """Accepts connections and never answers (what a hung Kaggle endpoint looks like to the SDK)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


def test_the_per_call_deadline_ends_a_hung_sdk_call(stalled_server: int, monkeypatch: pytest.MonkeyPatch,
                                                    slept: list[float]) -> None:
    """The SDK sends with no timeout; our session adapter gives it one; retried, then exit 5."""
    from tunix_rt.kaggle_client import connect

    url = f"http://127.0.0.1:{stalled_server}"
    env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": "",
           "no_proxy": "", "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": "k" * 12}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    policy = retry.RetryPolicy(attempts=2, call_timeout_s=0.5, connect_timeout_s=0.5, sleep=slept.append)
    client = connect(policy=policy, verify=False)
    with pytest.raises(TunixRtError) as info:
        client.status("alice/hung-kernel", 1)
    assert info.value.exit_code == EXIT_API and "Timeout" in info.value.message
    assert client.calls == 2
