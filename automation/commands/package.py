"""``tunix-rt package --run-dir DIR [--output DIR] [--json]``: write the deterministic submission zip."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_OK
from ..input_checks import output_arg
from ..package import package
from ..progress import Reporter


def run(args: argparse.Namespace) -> int:
    """Validate the run's evidence (once) and write ``<output>/tunix_rt_<prefix>_<date>_<sha>.zip``."""
    reporter = Reporter("package", json_mode=args.json, to_stdout=True)

    def body() -> int:
        output = output_arg(args.output, Path(args.run_dir))
        result = package(Path(args.run_dir), output, redactor=reporter.redactor)
        reporter.result(EXIT_OK, f"wrote {result.path} ({len(result.members)} files, {result.size_bytes:,} bytes, "
                        f"sha256 {result.sha256})", zip=str(result.path), sha256=result.sha256,
                        size_bytes=result.size_bytes, members=list(result.members))
        return EXIT_OK

    return reporter.run(body)
