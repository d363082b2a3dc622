"""How the emulator answers where Kaggle's behaviour is not a fault but the way it is (docs/kaggle-behaviour.md
lists each with its public source). The defaults answer like Kaggle; the older, friendlier behaviour of this
emulator stays reachable through a flag (``hidden_kernel_status=404``, ``stream_idle_cut_s=None``, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

# kaggle-cli docs/kernels.md "Accelerators available as of Feb 2026", plus the retired ids the 2.2.5 client
# warns about (_RETIRED_ACCELERATORS) and the server substitutes: SaveKernel takes these, and only these.
KNOWN_MACHINE_SHAPES = frozenset({
    "NvidiaTeslaP100", "TpuV38", "NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "Tpu1VmV38", "NvidiaTeslaA100",
    "NvidiaL4", "TpuV5E8", "NvidiaL4X1", "TpuV6E8", "NvidiaH100", "NvidiaRtxPro6000", "TpuV232", "TpuV2256",
})


@dataclass(frozen=True)
class QuotaConfig:
    """The weekly accelerator quota GetAcceleratorQuotaStatistics answers (hours; kagglesdk
    ``ApiAcceleratorQuota``). Time that versions of this emulator ran on GPU/TPU is added to ``used``."""

    gpu_used_h: float = 0.0
    gpu_allowed_h: float = 30.0
    tpu_used_h: float = 0.0
    tpu_allowed_h: float = 20.0
    refresh_in_h: float = 72.0  # the weekly refresh, this long after the emulator started

    def refresh_time(self, started: float) -> datetime:
        return (datetime.fromtimestamp(started, UTC) + timedelta(hours=self.refresh_in_h)).replace(tzinfo=None)


@dataclass(frozen=True)
class KaggleBehaviour:
    """Kaggle's own ways, on by default."""

    # A kernel the caller cannot see (missing, or someone else's private one) answers 403 on GetKernel,
    # GetKernelSessionStatus, ListKernelSessionOutput and the log stream (kaggle-cli PR #1201; kaggle-api
    # #548). 404: the emulator's old answer.
    hidden_kernel_status: int = 403
    # currentVersionNumber advances only when the new version's session ends (the SDK does not document
    # when it advances; this is the worst case the tool must survive).
    version_lags: bool = False
    # The load balancer cuts a log stream that sent nothing for this long (~3 minutes, kaggle-cli PR #999);
    # a reconnect replays the log from the start. None: never cut.
    stream_idle_cut_s: float | None = 180.0
    stream_cut_clean: bool = False  # True: end the chunked body without END_OF_LOG; False: drop the socket
    # Every n-th 429 comes without Retry-After (kaggle-cli #938: the header is not reliable). 0: always sent.
    omit_retry_after_every: int = 2
    # What an expired signed output URL answers: 400 (GCS ExpiredToken) or 403.
    url_expired_status: int = 400
    # SaveKernel answers {"error": …} for a machineShape outside this set (push errors come in-band, #545).
    machine_shapes: frozenset[str] = field(default=KNOWN_MACHINE_SHAPES)
    new_script_s: float = 0.0  # a new version reads NEW_SCRIPT this long before QUEUED
    # At most this many batch sessions of one kind (GPU/TPU/CPU) per account; a push beyond it is refused
    # in-band, "Maximum batch GPU session count of N reached." (kaggle-cli #185; sessions.py). None: no limit
    # (Kaggle's own number depends on the account and is not published).
    max_running: int | None = None

    def __post_init__(self) -> None:
        if self.hidden_kernel_status not in (403, 404):
            raise ValueError("hidden_kernel_status must be 403 or 404")
        if self.url_expired_status not in (400, 403):
            raise ValueError("url_expired_status must be 400 or 403")
        if self.stream_idle_cut_s is not None and self.stream_idle_cut_s <= 0:
            raise ValueError("stream_idle_cut_s must be > 0 (or None)")
        if self.max_running is not None and self.max_running < 1:
            raise ValueError("max_running must be >= 1 (or None)")
        if self.omit_retry_after_every < 0 or self.new_script_s < 0:
            raise ValueError("omit_retry_after_every and new_script_s must be >= 0")

    def with_changes(self, **changes: Any) -> KaggleBehaviour:
        if "machine_shapes" in changes:
            changes["machine_shapes"] = frozenset(changes["machine_shapes"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["machine_shapes"] = sorted(self.machine_shapes)
        return out
