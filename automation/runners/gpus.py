"""``--gpus`` for the Docker backend: which GPUs the container gets, spelled as ``docker run --gpus`` spells it.

``all`` (every GPU), a count (``2``: the first two) or ``device=ID[,ID…]`` (GPU indexes or UUIDs, as
``nvidia-smi -L`` lists them). A container given GPUs runs an image built with CUDA JAX
(``kernel/requirements-gpu.txt``, build arg ``JAX_ACCELERATOR=cuda12``), so the kernel computes on them.
Docker's own flag and its values: docs.docker.com, "docker container run --gpus".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPUS_HELP = "all, a count, or device=ID[,ID] (as docker run --gpus)"


@dataclass(frozen=True)
class GpuRequest:
    """A parsed ``--gpus`` value: ``count`` (-1 = all) or explicit ``device_ids``."""

    spec: str  # as the user wrote it (recorded in the run's command line)
    count: int | None = None
    device_ids: tuple[str, ...] = ()

    def device_requests(self) -> list[Any]:
        """The docker SDK's ``device_requests`` for this request (capability ``gpu``: NVIDIA's runtime)."""
        from docker.types import DeviceRequest

        if self.device_ids:
            return [DeviceRequest(device_ids=list(self.device_ids), capabilities=[["gpu"]])]
        return [DeviceRequest(count=self.count, capabilities=[["gpu"]])]


def parse_gpus(value: str) -> GpuRequest:
    """Parse a ``--gpus`` value; ValueError (one line naming the value) on anything else."""
    text = value.strip()
    if text == "all":
        return GpuRequest(spec=text, count=-1)
    if text.isdigit() and int(text) > 0:
        return GpuRequest(spec=text, count=int(text))
    if text.startswith("device="):
        ids = tuple(part.strip() for part in text[len("device="):].split(","))
        if ids and all(ids):
            return GpuRequest(spec=text, device_ids=ids)
    raise ValueError(f"--gpus: {value!r} is not {GPUS_HELP}")
