"""A local emulator of the Kaggle kernels API that the real ``kaggle`` client talks to (see app.py)."""

from tunix_rt.emulator.app import Emulator
from tunix_rt.emulator.auth import AuthConfig
from tunix_rt.emulator.faults import FAULT_KINDS, FaultConfig
from tunix_rt.emulator.server import RecordedRequest

__all__ = ["FAULT_KINDS", "AuthConfig", "Emulator", "FaultConfig", "RecordedRequest"]
