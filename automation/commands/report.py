"""``tunix-rt report RUN_DIR``: write ``report.html`` and ``loss.png`` into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_OK
from ..run_report import write_report


def run(args: argparse.Namespace) -> int:
    """Draw the report from the run's evidence and outputs; print what was written."""
    files = write_report(Path(args.run_dir))
    print(f"wrote {files.html} ({files.html_bytes:,} bytes; {files.items} eval items, {files.points} loss points) "
          f"and {files.png} ({files.png_bytes:,} bytes)")
    return EXIT_OK
