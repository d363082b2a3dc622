"""A persistent XLA compilation cache for rehearsals: a warm rehearsal reuses what the last one compiled.

On CPU most of a smoke rehearsal is XLA compilation, not training: the train step, the model init and the
sampler's prefill/decode take about 12 of the 21 s a local smoke rehearsal needs on 2 cores
(``bench/rehearsal.py``, BENCHMARKS.md). JAX can keep compiled programs on disk; an entry is keyed by the
program, the devices, the compile options and the JAX/XLA versions, so a hit is exactly the program that
would have been compiled. The runners point the kernel at one cache folder per backend (the container's
jaxlib build may differ from this machine's):

    <setting>/<backend>   setting: ``tunix-rt rehearse --jax-cache DIR|off``, else $TUNIX_RT_JAX_CACHE,
                          else $XDG_CACHE_HOME/tunix-rt/jax (~/.cache/tunix-rt/jax)

``off`` (or ``0``) turns it off. The environment variable is read through knobs.py (:func:`default_setting`). It is
only a cache: deleting it costs one cold rehearsal. Pushed Kaggle sessions start without it and compile as
before; the Kaggle emulator does not use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .. import knobs

_OFF = {"0", "off", "false", "no", "none"}
CONTAINER_DIR = "/var/cache/tunix-rt-jax"  # where the Docker runner mounts the host folder


def default_setting(environ: Mapping[str, str] | None = None) -> str:
    """$TUNIX_RT_JAX_CACHE when set, else the default folder ($XDG_CACHE_HOME or ~/.cache, /tunix-rt/jax)."""
    environ = os.environ if environ is None else environ
    setting = knobs.text(knobs.JAX_CACHE, environ)
    if setting:
        return setting
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return str(Path(base) / "tunix-rt" / "jax")


def is_off(setting: str) -> bool:
    """True for the settings that turn the cache off (``off``, ``0``, ``none``…)."""
    return setting.strip().lower() in _OFF


def host_dir(backend: str, setting: str | None = None) -> Path | None:
    """The cache folder for ``backend`` ("local" | "docker") under ``setting`` (None: :func:`default_setting`),
    created; None when turned off."""
    setting = default_setting() if setting is None else setting
    if is_off(setting):
        return None
    folder = Path(setting).expanduser() / backend
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache must never fail a rehearsal
    return folder


def kernel_env(cache_dir: str | Path) -> dict[str, str]:
    """Environment that makes JAX in the kernel read and write the cache at ``cache_dir``."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(cache_dir),
        # Cache every program, not only those that took > 1 s to compile: the model init and the sampler's
        # many small programs add up to seconds per run.
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
