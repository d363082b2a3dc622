"""Shared fixtures (tests never touch the user's real Kaggle credentials or home folder), and the summary line
of a Docker run whose every test skipped: it must not read like a pass."""

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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """``pytest -m docker`` (tox's docker env) where every test skipped: say plainly that nothing was tested.
    (In CI the daemon fixture fails instead, so the env fails.)"""
    if "docker" not in (config.getoption("markexpr") or ""):
        return
    stats = terminalreporter.stats
    skipped = len(stats.get("skipped", []))
    if skipped and not any(stats.get(key) for key in ("passed", "failed", "error", "xfailed", "xpassed")):
        from tunix_rt.runners.docker import docker_host

        terminalreporter.write_sep("!", f"docker tier: all {skipped} tests SKIPPED, nothing was tested "
                                        f"(no Docker daemon answered at {docker_host()})", yellow=True, bold=True)
