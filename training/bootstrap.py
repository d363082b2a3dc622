"""The one path bootstrap of training/'s entry scripts (``python training/<script>.py``).

An entry script is thin: it imports this module (Python put the script's folder first on ``sys.path``, so it
is found there) and calls :func:`run` with the library module and function that do the work. :func:`run`
takes the folder off ``sys.path`` (or ``config.py``, ``model.py``… would shadow top-level modules of the same
name for every library imported later), puts its parent there instead and imports the folder as a package,
so the library's relative imports resolve. The same works from a checkout (``training``), an installed
tunix-rt (``tunix_rt/training``) and the kernel's unpacked payload or an unzipped submission (``training``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def run(module: str, function: str = "main") -> int:
    """Import ``<this folder>.<module>`` as a package module and return ``<function>()``'s exit code."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    return int(getattr(importlib.import_module(f"{here.name}.{module}"), function)() or 0)
