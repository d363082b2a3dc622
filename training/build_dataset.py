"""Write a dataset's `dataset.jsonl` + `manifest.json`, or check that the committed files regenerate exactly.

    python training/build_dataset.py                 # rewrite training/datasets/dev-reasoning-v2/
    python training/build_dataset.py --check         # exit 1 unless regeneration is byte-identical
    python training/build_dataset.py --dataset dev-reasoning-v2-x10 --out /tmp/x10
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

from .datasets import (  # noqa: E402  # noqa: E402
    DEFAULT_DATASET,
    KNOWN_DATASETS,
    DatasetError,
    canonical_jsonl,
    dataset_dir,
    generate_records,
    manifest_for,
)


def render_files(key: str) -> dict[str, bytes]:
    """The exact bytes of `dataset.jsonl` and `manifest.json` for ``key``."""
    jsonl = canonical_jsonl(generate_records(key))
    manifest = json.dumps(manifest_for(key, jsonl), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return {"dataset.jsonl": jsonl, "manifest.json": manifest.encode("utf-8")}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(key: str, out_dir: Path) -> dict[str, Path]:
    """Write both files of ``key`` into ``out_dir`` (atomically); returns their paths."""
    written = {}
    for name, data in render_files(key).items():
        _write_atomic(out_dir / name, data)
        written[name] = out_dir / name
    return written


def check_dataset(key: str, out_dir: Path) -> str | None:
    """None when the files in ``out_dir`` equal a fresh build byte for byte, else a one-line reason."""
    for name, data in render_files(key).items():
        path = out_dir / name
        if not path.is_file():
            return f"{path} is missing; run training/build_dataset.py to create it"
        if path.read_bytes() != data:
            return f"{path} differs from a fresh build of {key!r}; rebuild it with training/build_dataset.py"
    return None


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help=f"dataset key ({', '.join(KNOWN_DATASETS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: training/datasets/<key>)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    try:
        out_dir = args.out if args.out is not None else dataset_dir(args.dataset)
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


if __name__ == "__main__":
    sys.exit(main())
