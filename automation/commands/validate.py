"""``tunix-rt validate [RUN_DIR…] [--json]``: check evidence folders; one line per problem, exit 2 on any."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import paths
from ..errors import EXIT_OK, EXIT_USAGE, TunixRtError
from ..progress import Reporter
from ..validate import default_run_dirs, validate_many


def run(args: argparse.Namespace) -> int:
    """Validate the given run folders (default: every folder under submission_runs/). With ``--json`` the
    result object carries ``ok``, ``run_dirs`` and ``problems`` (each ``path``, ``field``, ``problem``)."""
    reporter = Reporter("validate", json_mode=args.json, to_stdout=True)

    def body() -> int:
        if args.run_dirs:
            run_dirs = [Path(d) for d in args.run_dirs]
        else:
            run_dirs = default_run_dirs()
            if not run_dirs:
                raise TunixRtError(f"no run folders under {paths.submission_runs_dir()} to validate", EXIT_USAGE)
        problems = validate_many(run_dirs, redactor=reporter.redactor)
        code = EXIT_USAGE if problems else EXIT_OK
        if problems:
            message = "\n".join(map(str, problems))
        else:
            message = f"OK: {len(run_dirs)} evidence folder(s) valid: {', '.join(str(d) for d in run_dirs)}"
        reporter.result(code, message, ok=not problems, run_dirs=[str(d) for d in run_dirs],
                        problems=[p.as_dict() for p in problems])
        return code

    return reporter.run(body)
