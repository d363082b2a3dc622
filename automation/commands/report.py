"""``tunix-rt report RUN_DIR [--json]``: write ``report.html`` and ``loss.png`` into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import rundir_lock
from ..errors import EXIT_OK
from ..progress import Reporter
from ..run_report import write_report


def run(args: argparse.Namespace) -> int:
    """Draw the report from the run's evidence and outputs; print what was written."""
    reporter = Reporter("report", json_mode=args.json, to_stdout=True)

    def body() -> int:
        files = write_report(Path(args.run_dir))
        reporter.result(EXIT_OK, f"wrote {files.html} ({files.html_bytes:,} bytes; {files.items} eval items, "
                        f"{files.points} loss points) and {files.png} ({files.png_bytes:,} bytes)",
                        html=str(files.html), png=str(files.png), html_bytes=files.html_bytes,
                        png_bytes=files.png_bytes, items=files.items, loss_points=files.points)
        return EXIT_OK

    return reporter.run(rundir_lock.locked(Path(args.run_dir), "report", body, create=False))
