"""The local runner's pieces the Kaggle emulator reuses: the papermill command and the kernel environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.runners.local import kernel_env, papermill_command, run_local


def test_papermill_command_is_a_kaggle_batch_run(tmp_path: Path) -> None:
    cmd = papermill_command(tmp_path / "in.ipynb", tmp_path / "out" / "__notebook__.ipynb", tmp_path / "out")
    assert cmd[:3] == [sys.executable, "-m", "papermill"]
    assert "--log-output" in cmd and cmd[cmd.index("-k") + 1] == "python3"
    assert cmd[cmd.index("--cwd") + 1] == str(tmp_path / "out")
    assert cmd.index(str(tmp_path / "in.ipynb")) < cmd.index(str(tmp_path / "out" / "__notebook__.ipynb"))


def test_kernel_env_drops_credentials_and_marks_a_batch_run(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "KAGGLE_KEY": "0123456789abcdef", "KAGGLE_USERNAME": "alice",
            "KAGGLE_API_TOKEN": "KGAT_secret", "KAGGLE_CONFIG_DIR": "/home/alice/.kaggle", "HOME": "/root"}
    env = kernel_env(tmp_path / "kaggle" / "input", base)
    assert not {"KAGGLE_KEY", "KAGGLE_USERNAME", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"} & env.keys()
    assert env["KAGGLE_KERNEL_RUN_TYPE"] == "Batch"
    assert env["TUNIX_RT_INPUT_DIR"] == str(tmp_path / "kaggle" / "input")
    assert env["TUNIX_RT_NO_INSTALL"] == "1"  # a rehearsal never pip-installs into this environment
    assert (env["PATH"], env["HOME"]) == ("/usr/bin", "/root")


def test_missing_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(TunixRtError) as err:
        run_local(tmp_path / "no-bundle", tmp_path / "run", stream=None)
    assert err.value.exit_code == EXIT_USAGE and "run tunix-rt bundle first" in err.value.message
