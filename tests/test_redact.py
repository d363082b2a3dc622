"""Credential redaction: env values, kaggle.json, and credential shapes; never anything harmless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tunix_rt.redact import REDACTED, Redactor, find_credentials, looks_secret, secret_values

FAKE_KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "name",
    [
        "KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "OPENAI_API_KEY",
        "hf_token",
    ],
)
def test_secret_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["KAGGLE_USERNAME", "HOME", "PATH", "KAGGLE_CONFIG_DIR", "KEYBOARD"])
def test_harmless_names(name: str) -> None:
    assert not looks_secret(name)


def test_env_value_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    text = f"using key {FAKE_KEY} for alice"
    assert Redactor().redact(text) == f"using key {REDACTED} for alice"
    assert find_credentials(text)


def test_kaggle_json_and_access_token_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "kaggle.json").write_text(json.dumps({"username": "alice", "key": "s3cr3t-from-kaggle-json"}))
    (cfg / "access_token").write_text("KGAT_tokenfromfile\n")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg))
    values = secret_values()
    assert {"s3cr3t-from-kaggle-json", "KGAT_tokenfromfile"} <= values
    out = Redactor().redact("a s3cr3t-from-kaggle-json b")
    assert "s3cr3t" not in out and REDACTED in out


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Authorization: Basic YWxpY2U6MDEyMzQ1Njc4OWFiY2RlZg==", "YWxpY2U6MDEyMzQ1Njc4OWFiY2RlZg=="),
        ('headers={"Authorization": "Bearer abc.def.ghi-jkl"}', "abc.def.ghi-jkl"),
        ("token KGAT_0123456789abcdefABCDEF in a log", "KGAT_0123456789abcdefABCDEF"),
        (
            '{"username": "alice", "key": "0123456789abcdef0123456789abcdef"}',
            "0123456789abcdef0123456789abcdef",
        ),
        ("export KAGGLE_API_TOKEN=whatever-value-1234", "whatever-value-1234"),
        ("MY_SERVICE_PASSWORD: hunter2hunter2", "hunter2hunter2"),
    ],
)
def test_shapes_redacted_without_env(text: str, secret: str) -> None:
    redactor = Redactor(environ={"HOME": "/nonexistent"})
    out = redactor.redact(text)
    assert secret not in out
    assert REDACTED in out
    assert redactor.find(text)
    assert not redactor.find(out), "redacted text must not still look like a credential"


@pytest.mark.parametrize(
    "text",
    [
        "step 10 loss 2.3041 tokens 123456 tokens_per_second 991.2",
        "eos_token: <eos>  pad_token=<pad>",
        "a basic implementation_of_something_long",
        "sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
)
def test_harmless_text_untouched(text: str) -> None:
    assert Redactor(environ={"HOME": "/nonexistent"}).redact(text) == text


def test_short_values_are_not_secrets() -> None:
    # A one-character "secret" would shred every log line.
    r = Redactor(environ={"SOME_TOKEN": "1", "HOME": "/nonexistent"})
    assert r.redact("1 2 3") == "1 2 3"


def test_multiline_block_redacts_each_line() -> None:
    r = Redactor(["value-one-secret"], environ={"HOME": "/nonexistent"})
    block = "x value-one-secret\nKAGGLE_KEY=abcdefgh123\nplain\n"
    out = r.redact(block)
    assert out == f"x {REDACTED}\nKAGGLE_KEY={REDACTED}\nplain\n"
