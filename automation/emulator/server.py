"""The HTTP side of the emulator: routing, auth, fault injection, request recording, downloads, log stream.

Routes (the paths kagglesdk and the kaggle client use):

- ``POST /api/v1/<service>/<Method>`` (LOCALHOST env, or through the proxy recipe) and ``POST /v1/...``
  (a client whose PROD endpoint was patched), also as absolute-form proxy request lines
  (``POST http://localhost/api/v1/...``).
- ``GET /api/v1/kernels/logs/stream/<owner>/<slug>[?versionLabel=vN]``: SSE while running, the JSON log after.
  Like Kaggle's load balancer, a stream that sent nothing for ``stream_idle_cut_s`` is cut (the socket
  dropped mid-body, or with ``stream_cut_clean`` the body ended without ``END_OF_LOG``); a reconnect
  replays the log from the start (kaggle-cli PR #999).
- ``GET /blob/<token>``: an output file (no auth, like a signed URL; Range requests honoured).
- ``GET /code/<owner>/<slug>``: a one-line text page (the ``url`` a push answers with).
- ``/_emulator/requests`` (GET), ``/_emulator/faults`` (GET/POST), ``/_emulator/behaviour`` (GET/POST),
  ``/_emulator/push-error`` (POST): control for an emulator running in another process; not recorded,
  no faults.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tunix_rt.emulator.faults import BLOB, LOG_STREAM, error_body
from tunix_rt.emulator.rpc import RpcContext, not_found

if TYPE_CHECKING:
    from tunix_rt.emulator.app import Emulator

_API_PREFIX = re.compile(r"^/(?:api/)?v1/(.+)$")
_LOG_STREAM = re.compile(r"^kernels/logs/stream/([^/]+)/([^/]+)$")
_SECRET_FIELDS = ("token", "password", "key", "apiKey")


@dataclass
class RecordedRequest:
    """One request as the emulator saw it (credentials never recorded)."""

    method: str
    path: str  # the path only, also for absolute-form proxy requests
    target: (
        str  # RPC "kernels.KernelsApiService/SaveKernel" (see .rpc), "blob", "logs_stream", "page", "unknown"
    )
    body: dict[str, Any] | None = None
    query: dict[str, list[str]] = field(default_factory=dict)
    host: str = ""
    user: str | None = None
    status: int | None = None  # None: the connection was dropped without an answer
    fault: str | None = None
    time: float = 0.0

    @property
    def rpc(self) -> str:
        """The RPC method name ("SaveKernel"), or "" for non-RPC requests."""
        return self.target.rsplit("/", 1)[1] if "/" in self.target else ""


class _Dropped(Exception):
    """Close the connection without answering."""


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tunix-rt-kaggle-emulator"
    timeout = 120  # an idle keep-alive connection is closed after this
    server: EmulatorServer

    # ---- plumbing --------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the emulator prints its own one-line summary per request (Emulator.log)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # ---- one request -----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        emu = self.server.emulator
        split = urlsplit(self.path)
        path = split.path or "/"
        host = split.netloc or self.headers.get("Host") or f"{emu.host}:{emu.port}"
        raw = self._read_body() if method == "POST" else b""
        if path.startswith("/_emulator/"):
            self._control(method, path, raw)
            return
        target, params = _route(method, path)
        rec = RecordedRequest(method, path, target, query=parse_qs(split.query), host=host, time=time.time())
        if raw:
            try:
                rec.body = _redact(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                rec.body = None
        emu.record(rec)
        try:
            self._answer(rec, params, raw, f"http://{host}")
        except _Dropped:
            rec.status = None
            self._drop()
        except (BrokenPipeError, ConnectionResetError):
            rec.status = None
        emu.log(rec)

    def _answer(self, rec: RecordedRequest, params: tuple[str, ...], raw: bytes, base_url: str) -> None:
        emu = self.server.emulator
        if rec.target == "unknown":
            rec.status = 404
            self._send_json(404, {"code": 404, "message": f"No route for {rec.method} {rec.path}"})
            return
        fault_target = rec.rpc or rec.target
        fault = emu.faults.decide(fault_target) if rec.target != "page" else None
        rec.fault = fault
        if emu.faults.config.latency:
            emu.sleep(emu.faults.config.latency)
        if fault == "drop":
            raise _Dropped
        if fault == "hang":
            emu.sleep(emu.faults.config.hang_seconds)
        if fault in ("429", "500", "503"):
            status, body = error_body(fault)
            after = emu.retry_after_header() if fault == "429" else None  # None: some 429s carry none (#938)
            headers = {"Retry-After": str(after)} if after is not None else None
            rec.status = status
            self._send_json(status, body, headers)
            return
        if rec.target == "blob":
            self._blob(rec, params[0], fault == "drop_after")
            return
        if rec.target == "page":
            rec.status = 200
            self._send(200, f"Kaggle emulator kernel {params[0]}/{params[1]}\n".encode(), "text/plain")
            return
        public = rec.target == "security.OAuthService/IntrospectToken"
        rec.user = emu.auth.user_for(self.headers.get("Authorization"))
        if rec.user is None and not public:
            rec.status = 401
            self._send_json(401, {"code": 401, "message": "Unauthenticated"})
            return
        if rec.target == LOG_STREAM:
            self._log_stream(rec, params, fault == "drop_after")
            return
        handler = emu.handlers().get(rec.target)
        if handler is None:
            status, body = not_found(f"Unknown method {rec.target}")
        else:
            try:
                request = json.loads(raw or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                status, body = 400, {"code": 400, "message": "Request body is not a JSON object"}
            else:
                status, body = handler(request, RpcContext(rec.user, base_url))
        if fault == "drop_after":  # the call took effect; the answer is lost
            raise _Dropped
        rec.status = status
        self._send_json(status, body)

    # ---- downloads and logs ----------------------------------------------------------------------

    def _blob(self, rec: RecordedRequest, token: str, drop_after: bool) -> None:
        emu = self.server.emulator
        parsed = emu.store.parse_blob_token(token)
        version = emu.store.version(parsed[0], parsed[1], parsed[2]) if parsed else None
        found = emu.store.read_output(version, parsed[3]) if parsed and version else None
        if parsed and parsed[4] is not None and time.time() > float(parsed[4]):
            # What an expired signed GCS URL answers (a Kaggle download link: thiagodma/Pytorch_exs#2).
            status = emu.behaviour.url_expired_status
            rec.status = status
            self._send(
                status,
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
                b"<Message>The provided token has expired.</Message></Error>",
                "application/xml",
            )
            return
        if found is None:
            rec.status = 404
            self._send(
                404,
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                b"<Message>The specified key does not exist.</Message></Error>",
                "application/xml",
            )
            return
        source, size, mtime = found
        headers = {
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "ETag": f'"{int(mtime * 1e6):x}-{size:x}"',
        }
        start = _range_start(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if if_range and if_range not in (headers["ETag"], headers["Last-Modified"]):
            start = 0  # the object changed since the partial download: send it whole
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        # drop_after on a download: half the body arrives, then the connection breaks (a resumable failure).
        stop_at = start + (size - start) // 2 if drop_after else size
        if isinstance(source, bytes):
            self.wfile.write(source[start:stop_at])
        else:
            with open(source, "rb") as fh:  # streamed: outputs can be checkpoints of many GB
                fh.seek(start)
                left = stop_at - start
                while left > 0 and (block := fh.read(min(left, 1 << 20))):
                    self.wfile.write(block)
                    left -= len(block)
        if drop_after:
            self.wfile.flush()
            raise _Dropped
        rec.status = status

    def _log_stream(self, rec: RecordedRequest, params: tuple[str, ...], drop_after: bool) -> None:
        emu = self.server.emulator
        label = (rec.query.get("versionLabel") or [""])[0]
        m = re.match(r"^v([1-9][0-9]*)$", label)
        kernel = emu.store.kernel(params[0], params[1])
        if not emu.service.visible(kernel, rec.user):
            rec.status, body = emu.service.hidden(params[0], params[1])
            self._send_json(rec.status, body)
            return
        version = emu.store.version(params[0], params[1], int(m.group(1)) if m else None)
        if version is None or (label and not m):
            rec.status = 404
            self._send_json(404, {"code": 404, "message": f"Kernel {params[0]}/{params[1]} not found"})
            return
        if drop_after:
            raise _Dropped
        if version.finished:
            rec.status = 200
            self._send(200, emu.service.log_text(version).encode(), "application/json")
            return
        rec.status = 200
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        # Chunked, as a real SSE front end answers: requests' iter_lines then sees each event at once.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        sent = 0
        last_sent = time.monotonic()
        while True:
            finished = version.finished  # read before the file, so no entry written before the end is missed
            try:
                text = version.log_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            lines = text.split("\n")
            for index in range(sent, len(lines)):
                entry = lines[index].strip().lstrip("[,").rstrip("]").strip()
                if index == len(lines) - 1 and not finished:
                    try:  # the newest line: sent once it is a whole entry (the writer may be mid-write)
                        json.loads(entry)
                    except ValueError:
                        break
                if entry:
                    chunk(f"data: {entry}\n\n".encode())
                    last_sent = time.monotonic()
                sent = index + 1
            if finished or emu.stopping:
                chunk(b"data: END_OF_LOG\n\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            cut_s = emu.behaviour.stream_idle_cut_s
            if cut_s is not None and time.monotonic() - last_sent >= cut_s:
                rec.fault = "idle_cut"  # the load balancer's idle timeout (kaggle-cli PR #999)
                if emu.behaviour.stream_cut_clean:
                    self.wfile.write(b"0\r\n\r\n")  # the body ends, without END_OF_LOG
                    self.wfile.flush()
                    return
                self.wfile.flush()
                raise _Dropped
            emu.sleep(min(0.2, cut_s) if cut_s else 0.2)

    # ---- control ---------------------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> None:
        emu = self.server.emulator
        try:
            body = json.loads(raw or b"{}")
            if path == "/_emulator/requests" and method == "GET":
                self._send_json(200, [r.__dict__ for r in emu.requests])
            elif path == "/_emulator/faults" and method == "GET":
                self._send_json(200, emu.faults.config.to_dict())
            elif path == "/_emulator/faults" and method == "POST":
                emu.set_faults(**body)
                self._send_json(200, emu.faults.config.to_dict())
            elif path == "/_emulator/behaviour" and method == "GET":
                self._send_json(200, emu.behaviour.to_dict())
            elif path == "/_emulator/behaviour" and method == "POST":
                emu.set_behaviour(**body)
                self._send_json(200, emu.behaviour.to_dict())
            elif path == "/_emulator/push-error" and method == "POST":
                emu.fail_next_pushes(str(body["message"]), int(body.get("times", 1)))
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, {"code": 404, "message": f"No control route {method} {path}"})
        except (ValueError, TypeError, KeyError) as exc:
            self._send_json(400, {"code": 400, "message": f"Bad control request: {exc}"})


def _route(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """(target, params) for a request path."""
    m = _API_PREFIX.match(path)
    if m:
        rest = m.group(1)
        stream = _LOG_STREAM.match(rest)
        if stream and method == "GET":
            return LOG_STREAM, stream.groups()
        if method == "POST" and rest.count("/") == 1:
            return rest, ()
        return "unknown", ()
    parts = path.strip("/").split("/")
    if method == "GET" and len(parts) == 2 and parts[0] == "blob":
        return BLOB, (parts[1],)
    if method == "GET" and len(parts) == 3 and parts[0] == "code":
        return "page", (parts[1], parts[2])
    return "unknown", ()


def _redact(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("<redacted>" if k in _SECRET_FIELDS and v else _redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def _range_start(header: str | None, size: int) -> int:
    """The first byte of a ``Range: bytes=N-`` request (0 when absent or unusable)."""
    m = re.match(r"^bytes=(\d+)-$", (header or "").strip())
    if not m:
        return 0
    start = int(m.group(1))
    return start if 0 < start < size else 0
