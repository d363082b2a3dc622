"""Fine-tune Gemma 3 with Tunix, predict and score: the runbook's training entry point.

    python training/train_jax.py --config training/configs/sft_tiny.yaml --output ./output/m33_rehearsal \
        --dataset dev-reasoning-v2 --device cpu --smoke_steps 2

Flags, outputs and exit codes: ``run.py``; the path bootstrap: ``bootstrap.py``.
"""

if __name__ == "__main__":
    import sys

    from bootstrap import run

    sys.exit(run("run"))
