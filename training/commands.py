"""Command-line front ends of training/'s data and scoring scripts (``train_jax.py``'s is ``run.py``).

Each function parses its script's flags, calls the library and returns the exit code: 0 done, 1 a ``--check``
found a difference, 2 bad input (one line on stderr). The scripts themselves (``build_dataset.py``,
``build_evalset.py``, ``build_tokenizer.py``, ``rescore.py``) only bootstrap the path and call these.
Paths in messages are shown relative to the current folder when inside it: the kernel runs these from its
payload root, and its log must not carry the machine's temporary folders.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .report import write_atomic, write_json


def shown(path: str | os.PathLike[str]) -> Path:
    """``path`` relative to the current folder when it lies inside it, else as given."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return path


def _parser(script: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"{script}.py", description=description)


def build_dataset(argv: list[str] | None = None) -> int:
    """``build_dataset.py [--dataset KEY] [--out DIR] [--check]``."""
    from .dataset_registry import (
        DEFAULT_DATASET,
        KNOWN_DATASETS,
        DatasetError,
        check_dataset,
        dataset_dir,
        write_dataset,
    )

    parser = _parser("build_dataset", "Write a dataset's dataset.jsonl + manifest.json, or check that the "
                                      "committed files regenerate exactly.")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset key ({', '.join(KNOWN_DATASETS)})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: training/datasets/<key>)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    try:
        out_dir = shown(args.out if args.out is not None else dataset_dir(args.dataset))
        if args.check:
            problem = check_dataset(args.dataset, out_dir)
            if problem:
                print(f"build_dataset: {problem}", file=sys.stderr)
                return 1
            print(f"build_dataset: {out_dir} matches a fresh build of {args.dataset}")
            return 0
        written = write_dataset(args.dataset, out_dir)
    except DatasetError as exc:
        print(f"build_dataset: error: {exc}", file=sys.stderr)
        return 2
    print(f"build_dataset: wrote {', '.join(str(p) for p in written.values())}")
    return 0


def _check_or_write(script: str, files: dict[Path, bytes], check: bool, what: str) -> int:
    """``--check``: 0 when every rendered file matches its committed copy, else 1 naming the first that
    differs; otherwise write them all atomically."""
    if check:
        for path, data in files.items():
            if not path.is_file() or path.read_bytes() != data:
                print(f"{script}: {path} differs from a fresh build; run training/{script}.py", file=sys.stderr)
                return 1
        print(f"{script}: {what} matches a fresh build")
        return 0
    for path, data in files.items():
        write_atomic(path, data)
    return 0


def build_evalset(argv: list[str] | None = None) -> int:
    """``build_evalset.py [--out FILE] [--check]``."""
    from .evalset import DEFAULT_EVAL_SET, render_evalset

    parser = _parser("build_evalset", "Build evalsets/eval_v1.jsonl from the trace generator, with prompts "
                                      "unseen in every training dataset.")
    parser.add_argument("--out", type=Path, default=DEFAULT_EVAL_SET, help="file to write or check")
    parser.add_argument("--check", action="store_true", help="compare with --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    out = shown(args.out)
    data = render_evalset()
    code = _check_or_write("build_evalset", {out: data}, args.check, str(out))
    if code == 0 and not args.check:
        n_items = data.count(b"\n")
        print(f"build_evalset: wrote {out} ({n_items} items)")
    return code


def build_tokenizer(argv: list[str] | None = None) -> int:
    """``build_tokenizer.py [--out DIR] [--check]``."""
    from .tokenizer import SHIPPED_TOKENIZER_DIR, render_files

    parser = _parser("build_tokenizer", "Train the shipped byte-level BPE tokenizer (vocab 512) on the rendered "
                                        "dev-reasoning-v2 texts.")
    parser.add_argument("--out", type=Path, default=SHIPPED_TOKENIZER_DIR, help="tokenizer folder to write or check")
    parser.add_argument("--check", action="store_true", help="compare with --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    out = shown(args.out)
    files = {out / name: data for name, data in render_files().items()}
    code = _check_or_write("build_tokenizer", files, args.check, str(out))
    if code == 0 and not args.check:
        print(f"build_tokenizer: wrote {', '.join(str(p) for p in files)}")
    return code


def rescore(argv: list[str] | None = None) -> int:
    """``rescore.py --predictions FILE --eval_set FILE --output FILE``."""
    from .evalset import EvalSetError
    from .scoring import PredictionsError, read_predictions, score_against_file

    parser = _parser("rescore", "Score a predictions.jsonl (again) into eval_results.json.")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions.jsonl to score")
    parser.add_argument("--eval_set", type=Path, required=True, help="eval set JSONL the predictions answer")
    parser.add_argument("--output", type=Path, required=True, help="eval_results.json to write")
    args = parser.parse_args(argv)
    try:
        results = score_against_file(read_predictions(args.predictions), args.eval_set)
    except (PredictionsError, EvalSetError) as exc:
        print(f"rescore: error: {exc}", file=sys.stderr)
        return 2
    write_json(args.output, results)
    print(f"rescore: answer_correctness={results['answer_correctness']:.3f} "
          f"format_compliance={results['format_compliance']:.3f} "
          f"n_items={results['n_items']} -> {shown(args.output)}")
    return 0
