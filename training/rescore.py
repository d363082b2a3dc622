"""Score a `predictions.jsonl` (again) into `eval_results.json`, with the same scorer training uses.

    python training/rescore.py --predictions output/predictions.jsonl \
        --eval_set training/evalsets/eval_v1.jsonl --output output/rescored_eval_results.json

Exit 0 when written; 2 with a one-line message for a missing or malformed input file. The work:
``commands.rescore`` over ``scoring``; the path bootstrap: ``bootstrap.py``.
"""

if __name__ == "__main__":
    import sys

    from bootstrap import run

    sys.exit(run("commands", "rescore"))
