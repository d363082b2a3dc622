"""Pytest fixtures around the Kaggle API emulator (filled in by the emulator's owner)."""
