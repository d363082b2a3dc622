"""The account's concurrent batch sessions: the limit a push is refused for, and the peak a test checks.

Kaggle refuses a push in-band when the account's batch sessions of that kind are all in use:
``200 {"error": "Maximum batch GPU session count of 2 reached."}`` (kaggle-cli issue #185, where the CLI
prints it as "Kernel push error: Maximum batch GPU session count of 4 reached"; adapter-hub/playground PR #4
quotes the server's text with its full stop). The kind word for TPU and CPU sessions is a **defensive guess**
by analogy (only the GPU form is public). A session counts from the push until it ends; #185 shows cancelled
sessions counting for a while, so CANCEL_REQUESTED still counts here. The limit is off by default
(behaviour.py ``max_running``; ``tunix-rt emulator --max-running N``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tunix_rt.emulator.store import Version
from tunix_rt.kernel_status import TERMINAL


def session_kind(request: Mapping[str, Any]) -> str:
    """GPU, TPU or CPU: the kind of batch session a SaveKernel request asks for."""
    shape = str(request.get("machineShape") or "")
    if request.get("enableTpu") or shape.startswith("Tpu"):
        return "TPU"
    if request.get("enableGpu") or shape.startswith("Nvidia"):
        return "GPU"
    return "CPU"


def active_sessions(versions: Iterable[Version], owner: str, kind: str) -> int:
    """Sessions of ``owner`` of that kind that have not ended."""
    return sum(1 for v in versions if v.owner == owner and v.status not in TERMINAL
               and session_kind(v.request) == kind)


def limit_message(kind: str, limit: int) -> str:
    """Kaggle's in-band refusal text (module docstring)."""
    return f"Maximum batch {kind} session count of {limit} reached."
