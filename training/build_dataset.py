"""Write a dataset's `dataset.jsonl` + `manifest.json`, or check that the committed files regenerate exactly.

    python training/build_dataset.py                 # rewrite training/datasets/dev-reasoning-v2/
    python training/build_dataset.py --check         # exit 1 unless regeneration is byte-identical
    python training/build_dataset.py --dataset dev-reasoning-v2-x10 --out x10

The work: ``commands.build_dataset`` over ``dataset_registry``; the path bootstrap: ``bootstrap.py``.
"""

if __name__ == "__main__":
    import sys

    from bootstrap import run

    sys.exit(run("commands", "build_dataset"))
