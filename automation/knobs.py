"""Every ``TUNIX_RT_*`` environment variable tunix-rt reads, in one place (pipx ``paths.py`` style).

Two kinds:

* **a user's knobs are flags**; their variable is only the flag's default, and ``--help`` names it
  (``wait``/``run`` ``--stale-grace``, ``--no-log-stream``; ``rehearse`` ``--base-image``, ``--jax-cache``);
* **test and CI tuning** that no user needs to turn (the retry policy's bounds, the stream's "served" time,
  where ``docker/start_dockerd.sh`` keeps its socket), listed in docs/kaggle.md.

Variables tunix-rt *sets* for the kernel (``TUNIX_RT_INPUT_DIR``, ``TUNIX_RT_NO_INSTALL``; runners/local.py)
and the trainer's ``TUNIX_RT_METRIC`` line prefix are not read here: the kernel reads them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import EXIT_USAGE, TunixRtError

_OFF = {"0", "off", "false", "no", "none"}


@dataclass(frozen=True)
class Knob:
    """One environment variable: its name, what it sets, and the flag it is the default of (if any)."""

    env: str
    what: str
    flag: str | None = None  # None: test/CI tuning, listed in docs/kaggle.md
    default: float | None = None  # a flag's numeric default, defined here once (its module and --help read it)


STALE_GRACE = Knob("TUNIX_RT_STALE_GRACE_S", "seconds after a push in which a terminal status or a 403 is "
                   "taken for the previous version / not visible yet (default 30)", "--stale-grace", 30.0)
LOG_STREAM = Knob("TUNIX_RT_LOG_STREAM", "0 turns the kernel's log stream off while waiting (default on)",
                  "--no-log-stream")
BASE_IMAGE = Knob("TUNIX_RT_BASE_IMAGE", "FROM of the default kernel image (default python:3.12-slim-bookworm)",
                  "--base-image")
JAX_CACHE = Knob("TUNIX_RT_JAX_CACHE", "JAX compilation cache folder of rehearsals, or 0/off "
                 "(default ~/.cache/tunix-rt/jax)", "--jax-cache")
PUSH_SETTLE = Knob("TUNIX_RT_PUSH_SETTLE_S", "seconds a push whose reply never came is given to appear on "
                   "Kaggle before pushing again (default 300)", "--push-settle", 300.0)
RETRY_ATTEMPTS = Knob("TUNIX_RT_RETRY_ATTEMPTS", "API calls per request, the first included (default 8)")
RETRY_TOTAL_S = Knob("TUNIX_RT_RETRY_TOTAL_S", "give up a request after this many seconds (default 600)")
RETRY_BASE_S = Knob("TUNIX_RT_RETRY_BASE_S", "first backoff step in seconds (default 1)")
RETRY_MAX_WAIT_S = Knob("TUNIX_RT_RETRY_MAX_WAIT_S", "cap on one backoff wait in seconds (default 60)")
API_TIMEOUT_S = Knob("TUNIX_RT_API_TIMEOUT_S", "socket read timeout of one API call in seconds (default 60)")
STREAM_SERVED_S = Knob("TUNIX_RT_STREAM_SERVED_S", "a cut log stream that served this long reconnects at once "
                       "(default 30)")
DOCKER_RUN = Knob("TUNIX_RT_DOCKER_RUN", "folder of docker/start_dockerd.sh's socket (default /run/tunix-rt-docker)")

KNOBS = (STALE_GRACE, LOG_STREAM, PUSH_SETTLE, BASE_IMAGE, JAX_CACHE, RETRY_ATTEMPTS, RETRY_TOTAL_S, RETRY_BASE_S,
         RETRY_MAX_WAIT_S, API_TIMEOUT_S, STREAM_SERVED_S, DOCKER_RUN)


def _raw(knob: Knob, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(knob.env)
    return value.strip() if value is not None and value.strip() else None


def number(knob: Knob, default: float, environ: Mapping[str, str] | None = None) -> float:
    """The variable as a number, else ``default``; a value that is not a number is one clear line."""
    raw = _raw(knob, environ)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise TunixRtError(f"environment variable {knob.env}={raw[:200]!r} is not a number", EXIT_USAGE) from None
    if not math.isfinite(value) or value < 0:  # nan would make every deadline and interval meaningless
        raise TunixRtError(f"environment variable {knob.env}={raw[:200]!r} is not a finite number >= 0", EXIT_USAGE)
    return value


def enabled(knob: Knob, default: bool = True, environ: Mapping[str, str] | None = None) -> bool:
    """False when the variable says 0/off/false/no/none, True for any other value, else ``default``."""
    raw = _raw(knob, environ)
    return default if raw is None else raw.lower() not in _OFF


def text(knob: Knob, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or None when unset or empty."""
    return _raw(knob, environ)


def help_default(knob: Knob, default: str | None = None) -> str:
    """``--help`` text for a flag whose default comes from ``knob`` (else ``default``, else its own)."""
    return f"default: ${knob.env}, else {default if default is not None else f'{knob.default:g}'}"
