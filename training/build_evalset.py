"""Build `evalsets/eval_v1.jsonl` from the trace generator, with prompts unseen in every training dataset.

    python training/build_evalset.py            # rewrite training/evalsets/eval_v1.jsonl
    python training/build_evalset.py --check    # exit 1 unless regeneration is byte-identical

The work: ``commands.build_evalset`` over ``evalset``; the path bootstrap: ``bootstrap.py``.
"""

if __name__ == "__main__":
    import sys

    from bootstrap import run

    sys.exit(run("commands", "build_evalset"))
