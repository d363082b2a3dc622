"""A local emulator of the Kaggle kernels API (see server.py)."""
