"""Every TUNIX_RT_* variable tunix-rt reads is read in knobs.py: a user's knob is a flag listed in --help (its
variable the default), the rest is listed in docs/kaggle.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tunix_rt import knobs
from tunix_rt.cli import build_parser
from tunix_rt.errors import TunixRtError
from tunix_rt.wait import WaitOptions

ROOT = Path(__file__).resolve().parent.parent
SET_FOR_THE_KERNEL = {"TUNIX_RT_INPUT_DIR", "TUNIX_RT_NO_INSTALL", "TUNIX_RT_METRIC"}  # the kernel reads these


def test_no_module_but_knobs_reads_the_environment_for_a_tunix_rt_variable() -> None:
    known = {k.env for k in knobs.KNOBS}
    for path in sorted((ROOT / "automation").rglob("*.py")):
        if path.name == "knobs.py":
            continue
        text = path.read_text(encoding="utf-8")
        reads = re.findall(r"environ(?:\.get)?\(\s*[\"'](TUNIX_RT_\w+)|getenv\(\s*[\"'](TUNIX_RT_\w+)", text)
        assert [name for pair in reads for name in pair if name] == [], path
        unknown = set(re.findall(r"TUNIX_RT_[A-Z_]*[A-Z](?![A-Z_*])", text)) - known - SET_FOR_THE_KERNEL
        assert unknown == set(), (path, unknown)


def test_tuning_variables_are_listed_in_the_docs_and_flags_in_help() -> None:
    docs = (ROOT / "docs" / "kaggle.md").read_text(encoding="utf-8")
    assert [k.env for k in knobs.KNOBS if f"`{k.env}" not in docs] == []
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    helps = {verb: " ".join(sub.format_help().split()) for verb, sub in verbs.items()}
    for knob in knobs.KNOBS:
        if knob.flag:
            users = [verb for verb, text in helps.items() if knob.flag in text and f"${knob.env}" in text]
            assert users, knob
    for verb in ("wait", "run"):
        assert "--stale-grace" in helps[verb] and "--no-log-stream" in helps[verb]


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNIX_RT_STALE_GRACE_S", "7")
    monkeypatch.setenv("TUNIX_RT_LOG_STREAM", "0")
    from_env = WaitOptions.from_args(None, None, None)
    assert (from_env.stale_grace_s, from_env.log_stream) == (7.0, False)
    flags = WaitOptions.from_args(None, None, None, stale_grace=2.5, log_stream=True)
    assert (flags.stale_grace_s, flags.log_stream) == (2.5, True)
    args = build_parser().parse_args(["wait", "--stale-grace", "4", "--no-log-stream"])
    assert (args.stale_grace, args.log_stream) == (4.0, False)
    assert build_parser().parse_args(["wait"]).log_stream is None  # not given: the variable decides


def test_a_variable_that_is_not_a_number_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNIX_RT_RETRY_ATTEMPTS", "many")
    from tunix_rt.retry import RetryPolicy

    with pytest.raises(TunixRtError, match="TUNIX_RT_RETRY_ATTEMPTS='many' is not a number"):
        RetryPolicy.from_env()
