"""(Re)score a `predictions.jsonl` into `eval_results.json`.

    python training/score.py --predictions output/predictions.jsonl \
        --eval_set training/evalsets/eval_v1.jsonl --output output/eval_results.json

Exit 0 when written; 2 with a one-line message for a missing or malformed input file.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a plain script: import this folder as a package so the relative imports below resolve,
    # and drop the folder itself from sys.path so training/datasets.py cannot shadow a top-level module.
    import sys
    from pathlib import Path

    _pkg_dir = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _pkg_dir:
        sys.path.pop(0)
    sys.path.insert(0, str(_pkg_dir.parent))
    __package__ = _pkg_dir.name

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .evalset import EvalSetError  # noqa: E402
from .scoring import score_against_file  # noqa: E402


class PredictionsError(ValueError):
    """A missing or malformed predictions file."""


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Read a predictions JSONL file (one object per non-empty line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionsError(f"predictions file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionsError(f"predictions file {path} cannot be read: {exc}") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(
                f"predictions file {path} line {lineno}: not valid JSON ({exc.msg})"
            ) from None
        if not isinstance(rec, dict):
            raise PredictionsError(f"predictions file {path} line {lineno}: expected a JSON object")
        out.append(rec)
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    """Canonical JSON (indent 2, sorted keys) through a temp file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="predictions.jsonl to score")
    parser.add_argument("--eval_set", type=Path, required=True, help="eval set JSONL the predictions answer")
    parser.add_argument("--output", type=Path, required=True, help="eval_results.json to write")
    args = parser.parse_args(argv)
    try:
        results = score_against_file(read_predictions(args.predictions), args.eval_set)
    except (PredictionsError, EvalSetError) as exc:
        print(f"score: error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.output, results)
    print(f"score: answer_correctness={results['answer_correctness']:.3f} "
          f"format_compliance={results['format_compliance']:.3f} "
          f"n_items={results['n_items']} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
