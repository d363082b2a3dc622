"""The one vocabulary for where a pushed kernel version stands, and the sets built from it.

Kaggle's statuses are ``KernelWorkerStatus`` (kagglesdk 0.1.38, ``kernels/types/kernels_enums.py``):
QUEUED, RUNNING, COMPLETE, ERROR, CANCEL_REQUESTED, CANCEL_ACKNOWLEDGED, NEW_SCRIPT; ``GetKernelSessionStatus``
answers one of them for ``owner/slug`` ``versionLabel vN``. tunix-rt adds one of its own: PUSHED, a version
SaveKernel created that no status poll has answered for yet. The run state (runstate.py), ``wait``, ``pull``,
the run flow and the emulator all use these names and sets; nothing else spells them.
"""

from __future__ import annotations

from enum import StrEnum


class KernelStatus(StrEnum):
    """A kernel version's status: Kaggle's ``KernelWorkerStatus`` names, plus PUSHED (ours)."""

    PUSHED = "PUSHED"
    NEW_SCRIPT = "NEW_SCRIPT"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCEL_ACKNOWLEDGED = "CANCEL_ACKNOWLEDGED"

    @classmethod
    def parse(cls, name: str) -> KernelStatus:
        """The member named ``name``; ValueError for a name outside the vocabulary."""
        try:
            return cls(str(name).upper())
        except ValueError:
            raise ValueError(f"unknown kernel status {name!r} (known: {', '.join(cls)})") from None


# The session is over and will not change again.
TERMINAL = frozenset({KernelStatus.COMPLETE, KernelStatus.ERROR, KernelStatus.CANCEL_ACKNOWLEDGED})
# A session of this version exists and is on its way (seeing one proves the status is this version's).
ACTIVE = frozenset({KernelStatus.QUEUED, KernelStatus.RUNNING, KernelStatus.NEW_SCRIPT})
# Outputs can be pulled: terminal, or a cancel Kaggle never acknowledged (wait.py counts it as the end).
FINISHED = TERMINAL | {KernelStatus.CANCEL_REQUESTED}
