"""Shared fixtures. Tests never touch the user's real Kaggle credentials or home folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["emulator_fixtures", "kaggle_e2e_helpers"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolate_kaggle_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real credentials leak in: each test starts without KAGGLE_* variables and with its own config dir."""
    for key in list(os.environ):
        if key.startswith("KAGGLE_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path_factory.mktemp("kaggle_config")))


@pytest.fixture
def repo_root() -> Path:
    return REPO
