"""Train the shipped byte-level BPE tokenizer (vocab 512) on the rendered dev-reasoning-v2 texts.

    python training/build_tokenizer.py            # rewrite training/tokenizer/tokenizer{,_config}.json
    python training/build_tokenizer.py --check    # exit 1 unless a rebuild gives identical bytes

The work: ``commands.build_tokenizer`` over ``tokenizer``; the path bootstrap: ``bootstrap.py``.
"""

if __name__ == "__main__":
    import sys

    from bootstrap import run

    sys.exit(run("commands", "build_tokenizer"))
