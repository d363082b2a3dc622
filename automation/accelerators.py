"""Accelerator names → kernel-metadata.json fields (Kaggle's ``machine_shape`` ids)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .errors import EXIT_USAGE, TunixRtError


@dataclass(frozen=True)
class Accelerator:
    name: str  # what the user typed (normalised)
    machine_shape: str | None  # Kaggle id; None = CPU session
    enable_gpu: bool
    enable_tpu: bool
    retired: bool = False

    @property
    def kind(self) -> str:
        return "tpu" if self.enable_tpu else "gpu" if self.enable_gpu else "cpu"

    def metadata_fields(self) -> dict[str, object]:
        """Fields for kernel-metadata.json. TPU pushes carry no pinned docker image (Kaggle bug #1197)."""
        fields: dict[str, object] = {"enable_gpu": self.enable_gpu, "enable_tpu": self.enable_tpu}
        if self.machine_shape:
            fields["machine_shape"] = self.machine_shape
        if not self.enable_tpu:
            fields["docker_image_pinning_type"] = "original"
        return fields


# Friendly names. NvidiaTeslaT4 is "GPU T4 x2" (kaggle-cli #1196/#1198).
_ALIASES = {
    "cpu": (None, False, False),
    "gpu-t4x2": ("NvidiaTeslaT4", True, False),
    "tpu-v5e-8": ("TpuV5E8", False, True),
    "tpu-v6e-8": ("TpuV6E8", False, True),
    "gpu-l4": ("NvidiaL4", True, False),
    "gpu-a100": ("NvidiaTeslaA100", True, False),
    "gpu-h100": ("NvidiaH100", True, False),
}
_RAW_GPU = {"NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X1", "NvidiaTeslaA100", "NvidiaH100", "NvidiaRtxPro6000"}
_RAW_TPU = {"TpuV5E8", "TpuV6E8"}
# The server substitutes these (kaggle 2.2.5 warns too): P100 -> T4, TPU v3-8 -> v5e-8.
_RETIRED = {"NvidiaTeslaP100": "gpu", "TpuV38": "tpu", "Tpu1VmV38": "tpu", "gpu-p100": "gpu", "tpu-v3-8": "tpu"}
_RETIRED_RAW = {"gpu-p100": "NvidiaTeslaP100", "tpu-v3-8": "TpuV38"}

ACCELERATOR_NAMES = sorted(_ALIASES) + sorted(_RAW_GPU | _RAW_TPU)


def resolve(name: str) -> Accelerator:
    """Map a friendly name (``gpu-t4x2``, ``tpu-v5e-8``, ``cpu``) or a raw Kaggle id to metadata fields."""
    key = name.strip()
    if key.lower() in _ALIASES:
        shape, gpu, tpu = _ALIASES[key.lower()]
        return Accelerator(key.lower(), shape, gpu, tpu)
    if key in _RAW_GPU:
        return Accelerator(key, key, True, False)
    if key in _RAW_TPU:
        return Accelerator(key, key, False, True)
    retired_kind = _RETIRED.get(key) or _RETIRED.get(key.lower())
    if retired_kind:
        shape = _RETIRED_RAW.get(key.lower(), key)
        warnings.warn(
            f"accelerator {key!r} is retired on Kaggle; the server substitutes "
            f"{'GPU T4 x2' if retired_kind == 'gpu' else 'TPU v5e-8'}",
            stacklevel=2,
        )
        return Accelerator(key, shape, retired_kind == "gpu", retired_kind == "tpu", retired=True)
    raise TunixRtError(
        f"unknown accelerator {name!r}; use one of: {', '.join(ACCELERATOR_NAMES)}", EXIT_USAGE
    )
