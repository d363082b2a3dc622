"""The emulator's answers about the caller's account rather than a kernel: the weekly accelerator quota
(``kernels.KernelsApiService/GetAcceleratorQuotaStatistics``, the client's ``quota_view``; kaggle-cli PR
#1029) and model instances (``models.ModelApiService/GetModelInstance``, the client's
``model_instance_get``), which tunix-rt's pre-flight checks use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tunix_rt.emulator.behaviour import KaggleBehaviour, QuotaConfig
from tunix_rt.emulator.sessions import session_kind
from tunix_rt.emulator.store import Store

Answer = tuple[int, dict[str, Any]]
_FRAMEWORK_PREFIX = "MODEL_FRAMEWORK_"


def _duration(seconds: float) -> str:
    """A protobuf Duration as kagglesdk's TimeDeltaSerializer reads it ("151s")."""
    return f"{max(0, int(seconds))}s"


def _norm_framework(name: str) -> str:
    """``MODEL_FRAMEWORK_PY_TORCH`` / ``PyTorch`` / ``pytorch`` → ``pytorch`` (the client's lookup_enum)."""
    name = name.upper()
    if name.startswith(_FRAMEWORK_PREFIX):
        name = name[len(_FRAMEWORK_PREFIX):]
    return name.replace("_", "").replace("-", "").lower()


class AccountService:
    """Quota and model lookups. ``quota()`` None = the endpoint is not served (404, as an unsupported one)."""

    def __init__(self, store: Store, models: Callable[[], Mapping[str, Path | None]],
                 gated_models: Callable[[], frozenset[str]], quota: Callable[[], QuotaConfig | None],
                 behaviour: Callable[[], KaggleBehaviour], started: float) -> None:
        self.store = store
        self._models, self._gated, self._quota, self._behaviour = models, gated_models, quota, behaviour
        self.started = started

    def handlers(self) -> dict[str, Callable[[dict[str, Any], Any], Answer]]:
        out: dict[str, Callable[[dict[str, Any], Any], Answer]] = {
            "models.ModelApiService/GetModelInstance": self.get_model_instance,
        }
        if self._quota() is not None:
            out["kernels.KernelsApiService/GetAcceleratorQuotaStatistics"] = self.get_quota
        return out

    # ---- quota ---------------------------------------------------------------------------------------

    def _session_hours(self, user: str, kind: str) -> float:
        """Hours this user's versions ran on ``kind`` ("gpu"/"tpu") in this emulator."""
        total = 0.0
        now = time.time()
        for kernel in self.store.kernels():
            if kernel.owner != user:
                continue
            for version in kernel.versions.values():
                if session_kind(version.request).lower() == kind and version.started_at:
                    total += (version.finished_at or now) - version.started_at
        return total / 3600.0

    def get_quota(self, body: dict[str, Any], ctx: Any) -> Answer:
        cfg = self._quota() or QuotaConfig()
        user = str(ctx.user or "")

        def line(used_h: float, allowed_h: float, kind: str) -> dict[str, Any]:
            used = used_h + self._session_hours(user, kind)
            return {"timeUsed": _duration(used * 3600), "timeReserved": "0s",
                    "totalTimeAllowed": _duration(allowed_h * 3600), "minimumTimeAllowed": _duration(allowed_h * 3600),
                    "hasEverRun": used > 0}

        refresh = cfg.refresh_time(self.started).isoformat(timespec="milliseconds") + "Z"
        return 200, {"quotaRefreshTime": refresh,
                     "gpuQuota": line(cfg.gpu_used_h, cfg.gpu_allowed_h, "gpu"),
                     "tpuQuota": line(cfg.tpu_used_h, cfg.tpu_allowed_h, "tpu")}

    # ---- models --------------------------------------------------------------------------------------

    def get_model_instance(self, body: dict[str, Any], ctx: Any) -> Answer:
        owner, model = str(body.get("ownerSlug") or ""), str(body.get("modelSlug") or "")
        framework, instance = _norm_framework(str(body.get("framework") or "")), str(body.get("instanceSlug") or "")
        versions = []
        for source in self._models():
            parts = source.split("/")
            if len(parts) == 5 and parts[:2] == [owner, model] and parts[3] == instance \
                    and _norm_framework(parts[2]) == framework and parts[4].isdigit():
                versions.append(int(parts[4]))
        hidden = self._behaviour().hidden_kernel_status
        if not versions or f"{owner}/{model}" in self._gated():
            # Kaggle: "Permission 'models.get' was denied" for what the caller may not read (kaggle-api #548).
            message = "Permission 'models.get' was denied" if hidden == 403 else "Model instance not found"
            return hidden, {"code": hidden, "message": message}
        return 200, {"id": 1000 + max(versions), "slug": instance, "framework": str(body.get("framework")),
                     "versionNumber": max(versions), "url": f"/models/{owner}/{model}/{framework}/{instance}"}

