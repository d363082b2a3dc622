"""Drive a headless Chromium over the DevTools protocol on a pipe, for the report's browser test and the
README screenshot (docs/make_report_screenshot.py).

``--remote-debugging-pipe`` makes Chromium read protocol commands from fd 3 and write answers and events to
fd 4 (JSON messages ending with a NUL byte), so no port, websocket library or driver download is needed:
Debian's ``chromium`` package is enough. A visit records every request the page makes
(``Network.requestWillBeSent``), every failed one (``Network.loadingFailed``), console errors and script
exceptions, answers a probe expression, and can capture a screenshot clipped to an element.
Plain functions and a small class, so tests and scripts can import it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 900)


def find_chromium() -> str | None:
    """``$TUNIX_RT_CHROMIUM`` or the first Chromium on PATH."""
    env = os.environ.get("TUNIX_RT_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_flags(user_data_dir: Path) -> list[str]:
    """Headless, quiet, offline-minded flags; ``--no-sandbox`` only as root (Chromium refuses otherwise)."""
    flags = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--user-data-dir={user_data_dir}",
             f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    return flags


@dataclass
class Visit:
    """What one page load did."""

    url: str
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (data: URIs included)
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"url", "error"} per failed request
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    probe: Any = None  # the probe expression's value
    screenshot: bytes | None = None  # PNG

    @property
    def network_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith("data:")]


class Browser:
    """One headless Chromium; use as a context manager. ``timeout`` bounds every protocol exchange."""

    def __init__(self, binary: str, *, timeout: float = 60.0) -> None:
        self.binary = binary
        self.timeout = timeout
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._buf = b""

    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="tunix-rt-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Move the child's ends above the numbers they are copied to, so the two dup2s cannot collide.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def wire_pipes() -> None:  # in the child: fd 3 = commands in, fd 4 = answers out
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)
            os.closerange(5, 1024)

        self._proc = subprocess.Popen(
            [self.binary, *chromium_flags(Path(self._profile)), "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, close_fds=False)
        os.close(child_r)
        os.close(child_w)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._send("Browser.close", wait=False)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self._proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
              wait: bool = True) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        if not wait:
            return {}
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
                return
            self._events.append(self._read_message(deadline))

    # -- a visit --------------------------------------------------------------------------------------
    def visit(self, url: str, *, probe: str | None = None, clip_to: str | None = None,
              full_page: bool = False, width: int = WINDOW[0], height: int = WINDOW[1]) -> Visit:
        """Load ``url`` in a fresh tab, wait for its load event (and a moment for late requests), then
        evaluate ``probe`` (a JS expression returning JSON-able data) and capture a screenshot of the
        element matching the CSS selector ``clip_to`` or of the whole page (``full_page``)."""
        self._events = []
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self._send(f"{domain}.enable", session=session)
        self._send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self._events = []  # about:blank's own events are not the page's
        self._send("Page.navigate", {"url": url}, session=session)
        self._wait_event("Page.loadEventFired", session)
        self._send("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 300))",
                                        "awaitPromise": True}, session=session)
        visit = Visit(url)
        if probe:
            value = self._send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                               session=session)
            visit.probe = value.get("result", {}).get("value")
        clip = None
        if clip_to:
            rect = self._send("Runtime.evaluate", {"expression": (
                f"(() => {{ const r = document.querySelector({json.dumps(clip_to)}).getBoundingClientRect();"
                " return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; })()"),
                "returnByValue": True}, session=session)["result"]["value"]
            clip = {**rect, "scale": 1}
        elif full_page:
            size = self._send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        if clip is not None:
            shot = self._send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                         "captureBeyondViewport": True}, session=session)
            visit.screenshot = base64.b64decode(shot["data"])
        self._collect(visit, session)
        self._send("Target.closeTarget", {"targetId": target})
        return visit

    def _collect(self, visit: Visit, session: str) -> None:
        urls: dict[str, str] = {}
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            method = event.get("method")
            if method == "Network.requestWillBeSent":
                urls[params["requestId"]] = params["request"]["url"]
                visit.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                visit.failed.append({"url": urls.get(params["requestId"], "?"), "error": params.get("errorText")})
            elif method == "Runtime.exceptionThrown":
                visit.exceptions.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                visit.console_errors.append(params["entry"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                visit.console_errors.append(json.dumps(params.get("args", []))[:500])


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL and the list of paths requested."""
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
