"""Fault injection for the Kaggle emulator: seeded random faults plus scripted, deterministic ones.

Kinds a request can get instead of (or around) its normal answer:

- ``"429"``: HTTP 429 with ``Retry-After`` and Google's ``RESOURCE_EXHAUSTED`` body (kaggle-cli #931).
- ``"500"`` / ``"503"``: ``{"code":500,"message":"Internal error"}`` as seen in #1053.
- ``"drop"``: the socket is closed before the request is processed (the client sees ConnectionError).
- ``"drop_after"``: the request IS processed (a push creates its version), then the socket is closed
  without an answer: the ambiguous failure a client must not answer with a second push.
- ``"hang"``: the answer is delayed by ``hang_seconds`` (the SDK sets no HTTP timeout).

Random faults draw from ``random.Random(seed)`` in request-arrival order, so a single-threaded client
sees the same sequence on every run. Scripted faults (``FaultInjector.script``) come first and are
consumed in order, one per matching request.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

FAULT_KINDS = ("429", "500", "503", "drop", "drop_after", "hang")
BLOB = "blob"  # target name for output-file downloads
LOG_STREAM = "logs_stream"  # target name for GET .../kernels/logs/stream/...


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, how often. All rates are probabilities in [0, 1] per request."""

    seed: int = 0
    rate_429: float = 0.0
    retry_after: float = 1.0  # seconds announced in Retry-After (sent rounded up to an integer)
    rate_5xx: float = 0.0  # split evenly between 500 and 503
    rate_drop: float = 0.0  # split evenly between "drop" and "drop_after"
    latency: float = 0.0  # seconds added before every answer
    hang_seconds: float = 30.0  # how long a "hang" fault stalls
    stale_polls: int = 0  # after a push, this many status calls answer the previous version's status
    page_size_cap: int | None = None  # output pages never hold more files than this
    url_ttl: float | None = None  # output-file URLs expire after this many seconds (signed-URL expiry)
    # Which requests random faults hit: RPC method names ("SaveKernel", ...), "blob", "logs_stream".
    # None = all of them. Scripted faults name their target explicitly.
    targets: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "rate_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.rate_429 + self.rate_5xx + self.rate_drop > 1.0:
            raise ValueError("rate_429 + rate_5xx + rate_drop must not exceed 1")
        for name in ("retry_after", "latency", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.stale_polls < 0:
            raise ValueError("stale_polls must be >= 0")
        if self.page_size_cap is not None and self.page_size_cap < 1:
            raise ValueError("page_size_cap must be >= 1")

    def with_changes(self, **changes: Any) -> FaultConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        if "targets" in changes and changes["targets"] is not None:
            changes["targets"] = frozenset(changes["targets"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["targets"] = sorted(self.targets) if self.targets is not None else None
        return out


@dataclass
class FaultInjector:
    """Decides, per request, which fault (if any) it gets. Thread-safe."""

    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._scripted: dict[str, deque[str]] = {}

    def reconfigure(self, config: FaultConfig) -> None:
        """Swap the configuration; a new seed restarts the random sequence."""
        with self._lock:
            if config.seed != self.config.seed:
                self._rng = random.Random(config.seed)
            self.config = config

    def script(self, target: str, *kinds: str) -> None:
        """Queue faults for the next requests to ``target`` (an RPC name, "blob" or "logs_stream").
        ``"ok"`` in the sequence lets one request through untouched."""
        for kind in kinds:
            if kind not in FAULT_KINDS and kind != "ok":
                raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}, ok")
        with self._lock:
            self._scripted.setdefault(target, deque()).extend(kinds)

    def clear_script(self) -> None:
        with self._lock:
            self._scripted.clear()

    def pending(self, target: str) -> int:
        """How many scripted faults are still queued for ``target``."""
        with self._lock:
            return len(self._scripted.get(target, ()))

    def decide(self, target: str) -> str | None:
        """The fault kind for this request to ``target``, or None for a normal answer."""
        with self._lock:
            queue = self._scripted.get(target)
            if queue:
                kind = queue.popleft()
                return None if kind == "ok" else kind
            cfg = self.config
            if cfg.targets is not None and target not in cfg.targets:
                return None
            if cfg.rate_429 == cfg.rate_5xx == cfg.rate_drop == 0.0:
                return None
            roll = self._rng.random()
            if roll < cfg.rate_429:
                return "429"
            roll -= cfg.rate_429
            if roll < cfg.rate_5xx:
                return self._rng.choice(("500", "503"))
            roll -= cfg.rate_5xx
            if roll < cfg.rate_drop:
                return self._rng.choice(("drop", "drop_after"))
            return None


def error_body(kind: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body for the answer-with-an-error fault kinds."""
    if kind == "429":
        # Google front-end shape: no top-level "code", so the SDK falls through to raise_for_status().
        return 429, {"error": {"code": 429, "message": "Too many requests", "status": "RESOURCE_EXHAUSTED"}}
    if kind == "500":
        return 500, {"code": 500, "message": "Internal error"}
    if kind == "503":
        return 503, {"code": 503, "message": "The service is currently unavailable."}
    raise ValueError(f"fault kind {kind!r} has no error body")
