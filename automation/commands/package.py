"""``tunix-rt package --run-dir DIR [--output DIR]``: write the deterministic submission zip."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_OK
from ..package import package


def run(args: argparse.Namespace) -> int:
    """Validate the run's evidence and write ``<output>/tunix_rt_<prefix>_<date>_<sha>.zip``."""
    result = package(Path(args.run_dir), Path(args.output))
    print(f"wrote {result.path} ({len(result.members)} files, {result.size_bytes:,} bytes, "
          f"sha256 {result.sha256})")
    return EXIT_OK
