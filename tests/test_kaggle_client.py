"""The client layer: credentials found before any network call, kaggle's import contained, platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tunix_rt.errors import EXIT_AUTH, TunixRtError
from tunix_rt.kaggle_client import config_dir, find_credentials, platform_for


def test_no_credentials_says_where_to_put_them() -> None:
    with pytest.raises(TunixRtError) as info:
        find_credentials()
    assert info.value.exit_code == EXIT_AUTH
    message = info.value.message
    assert "KAGGLE_USERNAME" in message and "kaggle.json" in message
    assert os.environ["KAGGLE_CONFIG_DIR"] in message


def test_env_credentials_win_and_are_registered_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    creds = find_credentials()
    assert creds.username == "alice" and creds.source == "KAGGLE_USERNAME/KAGGLE_KEY"
    assert creds.secrets == ("0123456789abcdef",) and "0123456789abcdef" not in repr(creds.source)


def test_kaggle_json_in_the_config_dir() -> None:
    path = config_dir() / "kaggle.json"
    path.write_text(json.dumps({"username": "bob", "key": "fedcba9876543210"}))
    creds = find_credentials()
    assert creds.username == "bob" and creds.source == str(path)


def test_access_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123456789abcdef")
    assert find_credentials().source == "KAGGLE_API_TOKEN"


def test_xdg_config_dir_when_no_home_kaggle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert config_dir() == tmp_path / ".config" / "kaggle"
    (tmp_path / ".kaggle").mkdir()
    assert config_dir() == tmp_path / ".kaggle"


def test_platform() -> None:
    assert platform_for("https://www.kaggle.com/code/alice/x") == "kaggle"
    assert platform_for("http://localhost/code/alice/x") == "emulator"
    assert platform_for("https://www.kaggle.com.evil.example/code/a/b") == "emulator"


def test_import_side_effects_are_contained(tmp_path: Path) -> None:
    """kaggle's import prints auth help and makes ~/.config/kaggle; ours prints nothing and makes nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": ""})
    code = ("from tunix_rt.kaggle_client import _kaggle_api_class\n"
            "cls = _kaggle_api_class()\nprint('imported', cls.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported KaggleApi\n"
    assert "Authentication" not in proc.stderr
    assert not (tmp_path / ".config" / "kaggle").exists() and not (tmp_path / ".kaggle").exists()


def test_cli_without_credentials_exits_4_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["KAGGLE_CONFIG_DIR"] = str(tmp_path / "cfg")
    proc = subprocess.run([sys.executable, "-m", "tunix_rt", "wait", "--run-dir", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=120)
    # Nothing pushed yet is the first problem here (a usage error), found before any credential lookup.
    assert proc.returncode == 2 and "nothing pushed yet" in proc.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_state.json").write_text(json.dumps(
        {"schema_version": 1, "run_version": "run", "stages": {},
         "kaggle": {"kernel_ref": "alice/tiny-kernel", "version_number": 1}}))
    proc = subprocess.run([sys.executable, "-m", "tunix_rt", "wait", "--run-dir", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4
    assert proc.stderr.strip().count("\n") == 0 and "no Kaggle credentials found" in proc.stderr
    assert proc.stdout == ""
