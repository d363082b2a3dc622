"""tunix-rt: automate Kaggle training kernels (bundle, rehearse, push, wait, pull, evidence, package)."""

__version__ = "0.1.0"
