"""Pre-flight checks (owner, weekly quota, model sources) through the real client against the emulator, and
``tunix-rt quota``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from tunix_rt.emulator import Emulator, QuotaConfig
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.kaggle_client import KaggleClient, connect
from tunix_rt.preflight import QuotaLine, check_model_sources, check_owner, check_quota, parse_quota

GEMMA = "google/gemma-3/transformers/gemma-3-1b-it/1"
NINE_H = 9 * 3600


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    monkeypatch.setenv("TUNIX_RT_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("TUNIX_RT_RETRY_MAX_WAIT_S", "0.02")
    monkeypatch.setenv("TUNIX_RT_RETRY_ATTEMPTS", "2")


def client_for(emu: Emulator, monkeypatch: pytest.MonkeyPatch, warnings: list[str]) -> KaggleClient:
    for key, value in emu.client_env().items():
        if not key.startswith("KAGGLE_USERNAME") and key != "KAGGLE_KEY":
            monkeypatch.setenv(key, value)
    return connect(warn=warnings.append)


def test_left_is_allowed_minus_used_minus_reserved() -> None:
    answer = SimpleNamespace(quota_refresh_time=None, tpu_quota=None, gpu_quota=SimpleNamespace(
        time_used=timedelta(hours=20), time_reserved=timedelta(hours=3), total_time_allowed=timedelta(hours=30)))
    quota = parse_quota(answer)
    assert quota.gpu == QuotaLine("GPU", 72000.0, 10800.0, 108000.0) and quota.gpu.left_s == 25200.0
    assert quota.tpu is None and quota.refresh_text == "unknown"


def test_owner_must_be_the_signed_in_account(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(tmp_path / "k") as emu:
        client = client_for(emu, monkeypatch, [])
        check_owner("alice/tiny-kernel", client)
        check_owner("ALICE/tiny-kernel", client)  # Kaggle user names are case-insensitive in URLs
        with pytest.raises(TunixRtError) as info:
            check_owner("bob/tiny-kernel", client)
    assert info.value.exit_code == EXIT_USAGE and "use alice/tiny-kernel" in info.value.message
    assert "KAGGLE_USERNAME/KAGGLE_KEY" in info.value.message


@pytest.mark.parametrize(("kind", "session_s", "refused"), [("gpu", NINE_H, True), ("gpu", 7000, False),
                                                              ("tpu", NINE_H, False), ("tpu", 19 * 3600, True)])
def test_quota_refuses_a_session_that_does_not_fit(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch,
                                                   kind: str, session_s: int, refused: bool) -> None:
    quota = QuotaConfig(gpu_used_h=27.5, gpu_allowed_h=30, tpu_used_h=2, tpu_allowed_h=20)
    with Emulator(tmp_path / "k", quota=quota) as emu:
        warnings: list[str] = []
        client = client_for(emu, monkeypatch, warnings)
        if refused:
            with pytest.raises(TunixRtError) as info:
                check_quota(client, kind, session_s, ignore=False, warn=warnings.append)
            assert info.value.exit_code == EXIT_USAGE and "--ignore-quota" in info.value.message
            check_quota(client, kind, session_s, ignore=True, warn=warnings.append)
            assert len(warnings) == 1 and warnings[0].endswith("going on (--ignore-quota)")
        else:
            assert check_quota(client, kind, session_s, ignore=False, warn=warnings.append) is not None
            assert warnings == []
        assert len(emu.calls("GetAcceleratorQuotaStatistics")) == 1  # the credential check's answer, reused


def test_quota_message_and_what_fits(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(tmp_path / "k", quota=QuotaConfig(gpu_used_h=29.9, gpu_allowed_h=30)) as emu:
        client = client_for(emu, monkeypatch, [])
        with pytest.raises(TunixRtError) as info:
            check_quota(client, "gpu", 3600, ignore=False, warn=print)
    message = info.value.message
    assert "GPU quota: 29.9 h used of 30.0 h, 0.1 h left (refreshes 20" in message
    assert "this session may run 1.0 h (--session-timeout 3600)" in message and "wait for the refresh" in message


def test_a_missing_quota_endpoint_warns_once_and_goes_on(tmp_path: Path, env: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(tmp_path / "k", serve_quota=False) as emu:
        warnings: list[str] = []
        client = client_for(emu, monkeypatch, warnings)
        assert check_quota(client, "gpu", NINE_H, ignore=False, warn=warnings.append) is None
        assert len(emu.calls("GetAcceleratorQuotaStatistics")) == 1
    assert len(warnings) == 1 and "GPU/TPU quota" in warnings[0] and "HTTP 404" in warnings[0]


def test_model_sources_exist_and_are_readable(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(tmp_path / "k", gated_models=["google/gemma-2"],
                  known_model_sources=[GEMMA, "google/gemma-2/flax/gemma2-2b/1"]) as emu:
        warnings: list[str] = []
        client = client_for(emu, monkeypatch, warnings)
        check_model_sources(client, [GEMMA], warnings.append)
        for source, needle in (("google/gemma-2/flax/gemma2-2b/1", "accept the model's licence"),
                               ("nobody/nothing/jax/x/1", "HTTP 403"),
                               ("google/gemma-3/transformers/gemma-3-1b-it/7", "the latest is 1")):
            with pytest.raises(TunixRtError) as info:
                check_model_sources(client, [source], warnings.append)
            assert info.value.exit_code == EXIT_USAGE and needle in info.value.message, info.value.message
        emu.script_faults("GetModelInstance", "503", "503")
        check_model_sources(client, [GEMMA], warnings.append)  # the lookup itself failed: warn, go on
    assert "retry 1/1" in warnings[0]  # the retry policy's own warning, then one line: going on
    assert len(warnings) == 2 and "could not look up model source" in warnings[1] and "pushing anyway" in warnings[1]


def test_quota_verb(tmp_path: Path) -> None:
    with Emulator(tmp_path / "k", quota=QuotaConfig(gpu_used_h=3, tpu_used_h=1.5)) as emu:
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("KAGGLE_")}
        env.update(emu.client_env(user="alice", key="0123456789abcdef"), KAGGLE_CONFIG_DIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-m", "tunix_rt", "quota", "--json"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["gpu"] == {"kind": "GPU", "used_s": 10800.0, "reserved_s": 0.0, "allowed_s": 108000.0,
                                 "left_s": 97200.0}
        assert result["tpu"]["left_s"] == 20 * 3600 - 5400 and result["refresh"].endswith("UTC")
        assert result["account"] == "alice" and result["credentials"] == "KAGGLE_USERNAME/KAGGLE_KEY"
        human = subprocess.run([sys.executable, "-m", "tunix_rt", "quota"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert human.returncode == 0 and "GPU: 3.0 h used of 30.0 h, 27.0 h left" in human.stdout
        emu.serve_quota = False
        gone = subprocess.run([sys.executable, "-m", "tunix_rt", "quota"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert gone.returncode == 5 and "could not read the quota" in gone.stderr
