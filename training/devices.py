"""Which accelerator JAX uses, and the fsdp × tp mesh over every device it sees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .config import MeshSection

# --device → JAX_PLATFORMS. Set before jax is imported; "auto" leaves JAX's own choice (TPU > GPU > CPU).
_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}
DEVICE_CHOICES = ("auto", "cpu", "gpu", "tpu")


class DeviceError(RuntimeError):
    """The requested device is not what JAX found, or the mesh does not fit the devices."""


def select_platform(device: str) -> None:
    """Pin JAX to ``device`` through JAX_PLATFORMS; must run before the first ``import jax``."""
    if device != "auto":
        os.environ["JAX_PLATFORMS"] = _PLATFORMS[device]


@dataclass(frozen=True)
class DeviceInfo:
    """What JAX saw: reported in run_result.json."""

    platform: str  # cpu | gpu | tpu
    count: int
    kinds: list[str]
    fsdp: int
    tp: int

    def as_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "count": self.count, "kinds": self.kinds,
                "mesh": {"fsdp": self.fsdp, "tp": self.tp}}


def mesh_shape(section: MeshSection, count: int) -> tuple[int, int]:
    """Resolve -1 (all remaining devices) and check fsdp × tp uses every device exactly."""
    fsdp, tp = section.fsdp, section.tp
    if fsdp == -1:
        fsdp = count // tp if tp > 0 and count % tp == 0 else 0
    elif tp == -1:
        tp = count // fsdp if count % fsdp == 0 else 0
    if fsdp * tp != count:
        raise DeviceError(
            f"mesh fsdp={section.fsdp} x tp={section.tp} does not cover the {count} device(s) JAX sees"
        )
    return fsdp, tp


def make_mesh(section: MeshSection, device: str) -> tuple[Any, DeviceInfo]:
    """Build the ("fsdp", "tp") mesh over all devices; check the platform is the one asked for."""
    import jax

    try:
        platform = jax.default_backend()  # "cpu" | "gpu" | "tpu"
    except RuntimeError as exc:  # JAX_PLATFORMS names a backend this machine lacks
        reason = " ".join(str(exc).split())[:200]
        raise DeviceError(f"--device {device}: JAX cannot start it ({reason})") from None
    if device != "auto" and platform != device:
        raise DeviceError(f"--device {device} asked, but JAX runs on {platform}")
    devices = jax.devices()
    fsdp, tp = mesh_shape(section, len(devices))
    mesh = jax.make_mesh((fsdp, tp), ("fsdp", "tp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    info = DeviceInfo(platform=platform, count=len(devices),
                      kinds=sorted({d.device_kind for d in devices}), fsdp=fsdp, tp=tp)
    return mesh, info
