"""A local emulator of the Kaggle kernels API that the real ``kaggle`` client talks to.

``Emulator(data_dir, faults=FaultConfig(...), auth=AuthConfig(...), known_model_sources=...,
behaviour=KaggleBehaviour(...), quota=QuotaConfig(...))`` (app.py; behaviour: Kaggle's ways — 403 for
hidden kernels, lagging currentVersionNumber, log-stream idle cuts, …): ``.start()`` / ``.stop()``,
``.url``, ``.port``, ``.client_env(user, key)`` (recipe A env vars), ``.patch_client()`` (recipe B, in
process), ``.requests`` / ``.calls("SaveKernel")`` (recorded, no credentials), ``.set_faults(...)`` /
``.script_faults(target, *kinds)`` / ``.fail_next_pushes(msg)`` / ``.set_behaviour(...)`` (at run time),
``.cancel(...)``, ``.seed_version(...)`` / ``.add_output(...)`` / ``.add_output_symlink(...)`` /
``.wait_until(...)`` (test hooks). Modules: server.py (HTTP, routing, faults, recording), rpc.py (the
RPCs), store.py (kernels, versions, outputs on disk), accounts.py (quota, model lookups), behaviour.py,
executor.py (runs a version), faults.py, auth.py, kaggle_log.py.
"""

from tunix_rt.emulator.app import Emulator
from tunix_rt.emulator.auth import AuthConfig
from tunix_rt.emulator.behaviour import KaggleBehaviour, QuotaConfig
from tunix_rt.emulator.faults import FAULT_KINDS, FaultConfig
from tunix_rt.emulator.server import RecordedRequest

__all__ = ["FAULT_KINDS", "AuthConfig", "Emulator", "FaultConfig", "KaggleBehaviour", "QuotaConfig",
           "RecordedRequest"]
