"""Credentials exactly as the kaggle client finds them, the source really used, and the one credential check
(in process, against the emulator through the real client)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tunix_rt.credentials import LEGACY, TOKEN, config_dir, find_credentials, where_to_put_them
from tunix_rt.emulator import AuthConfig, Emulator
from tunix_rt.errors import EXIT_AUTH, TunixRtError
from tunix_rt.kaggle_client import connect

LIVE, EXPIRED = "KGAT_live0123456789", "KGAT_expired0123456789"


def test_where_to_put_them_names_both_kinds_of_kaggle_credentials() -> None:
    text = where_to_put_them()
    assert "Generate New Token" in text and "KAGGLE_API_TOKEN" in text and "~/.kaggle/access_token" in text
    assert "Create Legacy API Key" in text and "kaggle.json" in text and str(config_dir()) in text


def test_an_unreadable_kaggle_json_is_ignored_when_the_environment_has_both(monkeypatch: pytest.MonkeyPatch) -> None:
    (config_dir() / "kaggle.json").write_text("{not json")
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    creds = find_credentials()
    assert (creds.source, creds.kind, creds.username) == ("KAGGLE_USERNAME/KAGGLE_KEY", LEGACY, "alice")


def test_an_unreadable_kaggle_json_alone_is_exit_4_naming_it() -> None:
    path = config_dir() / "kaggle.json"
    path.write_text("{not json")
    with pytest.raises(TunixRtError) as info:
        find_credentials()
    assert info.value.exit_code == EXIT_AUTH and str(path) in info.value.message and "unreadable" in info.value.message


def test_the_environment_overrides_the_file_key_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    path = config_dir() / "kaggle.json"
    path.write_text(json.dumps({"username": "bob", "key": "fedcba9876543210"}))
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    creds = find_credentials()
    assert creds.username == "alice" and creds.source == f"KAGGLE_USERNAME + {path}"


def test_a_token_comes_first_and_the_legacy_key_is_its_fallback(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(LIVE + "\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    creds = find_credentials()
    assert creds.kind == TOKEN and creds.source == "KAGGLE_API_TOKEN (token.txt)"
    assert creds.fallback == "KAGGLE_USERNAME/KAGGLE_KEY" and set(creds.secrets) == {LIVE, "0123456789abcdef"}


@pytest.fixture
def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    emulator = Emulator(tmp_path / "k", auth=AuthConfig(tokens={LIVE: "alice"},
                                                        rejected_keys=frozenset({"revoked-key-0123"}))).start()
    for key, value in emulator.client_env().items():
        monkeypatch.setenv(key, value)
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TUNIX_RT_RETRY_BASE_S", "0.01")
    yield emulator
    emulator.stop()


def test_a_live_token_is_checked_by_introspection_only(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", LIVE)
    client = connect(warn=lambda m: pytest.fail(m))
    assert (client.credentials.kind, client.credentials.source, client.username) == (TOKEN, "KAGGLE_API_TOKEN",
                                                                                      "alice")
    assert [r.rpc for r in emu.requests] == ["IntrospectToken"] and client.sign_in_calls == 1


def test_an_expired_token_falls_back_to_the_legacy_key_and_calls_go_with_it(emu: Emulator,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", EXPIRED)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    warnings: list[str] = []
    client = connect(warn=warnings.append)
    assert (client.credentials.kind, client.credentials.source) == (LEGACY, "KAGGLE_USERNAME/KAGGLE_KEY")
    assert len(warnings) == 1 and "KAGGLE_API_TOKEN" in warnings[0] and EXPIRED not in warnings[0]
    # kagglesdk would send the expired token as Bearer again; the legacy key really goes out.
    quota = emu.calls("GetAcceleratorQuotaStatistics")
    assert len(quota) == 1 and quota[0].status == 200 and quota[0].user == "alice"


def test_a_rejected_legacy_key_is_exit_4_naming_its_source(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "revoked-key-0123")
    with pytest.raises(TunixRtError) as info:
        connect(warn=lambda m: None)
    assert info.value.exit_code == EXIT_AUTH and "KAGGLE_USERNAME/KAGGLE_KEY" in info.value.message
    assert "revoked-key-0123" not in info.value.message


def test_the_credential_check_is_skipped_for_a_second_connection(emu: Emulator,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    stream_client = connect(verify=False)
    assert emu.requests == [] and stream_client.sign_in_calls == 0
    assert os.environ["KAGGLE_KEY"] in stream_client.credentials.secrets
