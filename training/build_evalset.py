"""Build `evalsets/eval_v1.jsonl` from the trace generator, with prompts unseen in every training dataset.

    python training/build_evalset.py            # rewrite training/evalsets/eval_v1.jsonl
    python training/build_evalset.py --check    # exit 1 unless regeneration is byte-identical

25 items like learning.md's eval25: 12 word problems (2 per type), 8 synthetic (2 per type), 3 golden-style,
2 edge cases. Any prompt found in a registered dataset (dev-reasoning-v2 and dev-reasoning-v2-x10) is redrawn.
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
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from .datagen import FAMILIES, generate_plan  # noqa: E402
from .datasets import KNOWN_DATASETS, canonical_jsonl, load_dataset  # noqa: E402
from .evalset import DEFAULT_EVAL_SET  # noqa: E402

EVAL_SEED = 7001
# (family, task_type, how many)
EVAL_V1_PLAN: tuple[tuple[str, str, int], ...] = (
    *((("reasoning", task, 2) for task, _ in FAMILIES["reasoning"])),
    *((("synthetic", task, 2) for task, _ in FAMILIES["synthetic"])),
    ("golden_style", "repeat", 1), ("golden_style", "uppercase", 1), ("golden_style", "first_letter", 1),
    ("edge_case", "emoji", 1), ("edge_case", "unicode", 1),
)
_DIFFICULTY = {"reasoning": "medium", "synthetic": "easy", "golden_style": "easy", "edge_case": "hard"}


def training_prompts() -> set[str]:
    """Every prompt of every registered training dataset (the eval set must avoid all of them)."""
    return {rec["prompt"] for key in KNOWN_DATASETS for rec in load_dataset(key).records}


def build_items() -> list[dict]:
    """The eval_v1 items, in plan order, ids eval-001…"""
    plan = [(family, task) for family, task, count in EVAL_V1_PLAN for _ in range(count)]
    examples = generate_plan(plan, EVAL_SEED, exclude_prompts=training_prompts())
    items = []
    for n, (family, task_type, prompt, steps, answer) in enumerate(examples, 1):
        difficulty = "medium" if task_type == "arithmetic" else _DIFFICULTY[family]
        if family == "reasoning" and len(steps) == 3:
            difficulty = "easy"
        items.append({"id": f"eval-{n:03d}", "prompt": prompt, "expected_answer": answer, "category": family,
                      "task_type": task_type, "difficulty": difficulty})
    return items


def render_evalset() -> bytes:
    """The exact bytes of eval_v1.jsonl."""
    return canonical_jsonl(build_items())


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_EVAL_SET, help="file to write or check")
    parser.add_argument("--check", action="store_true", help="compare with --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    data = render_evalset()
    if args.check:
        if not args.out.is_file() or args.out.read_bytes() != data:
            print(f"build_evalset: {args.out} differs from a fresh build; run training/build_evalset.py",
                  file=sys.stderr)
            return 1
        print(f"build_evalset: {args.out} matches a fresh build")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    n_items = data.count(b"\n")
    print(f"build_evalset: wrote {args.out} ({n_items} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
