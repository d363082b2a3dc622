"""Fine-tune Gemma 3 with Tunix, predict and score: the runbook's training entry point.

    python training/train_jax.py --config training/configs/sft_tiny.yaml --output ./output/m33_rehearsal \
        --dataset dev-reasoning-v2 --device cpu --smoke_steps 2

Thin on purpose: it makes this folder importable as a package (from a checkout, an installed tunix_rt, or an
unpacked copy on Kaggle) and hands over to ``run.main``. See ``run.py`` for flags, outputs and exit codes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    # Python put this folder first on sys.path; drop it, or training/datasets.py would shadow HF `datasets`
    # (and config.py, model.py… other top-level modules) for every library imported later.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    sys.exit(importlib.import_module(f"{here.name}.run").main())
