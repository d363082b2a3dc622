"""The one Reporter: human lines or JSON objects with one shape for every verb, and --json on every verb."""

from __future__ import annotations

import json

import pytest
from cli_json import json_lines
from tunix_rt.cli import build_parser
from tunix_rt.errors import TunixRtError
from tunix_rt.progress import Reporter

FAKE = "KGAT_" + "0123456789abcdef" * 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_every_verb_takes_json() -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    missing = [verb for verb, sub in verbs.items() if verb != "emulator"
               and "--json" not in {opt for action in sub._actions for opt in action.option_strings}]  # noqa: SLF001
    assert missing == []


def test_events_and_result_share_one_shape(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE)
    reporter = Reporter("wait", json_mode=True, clock=Clock())
    reporter.event("status", f"alice/k v1: RUNNING {FAKE}", status="RUNNING")
    reporter.warn("slow")
    reporter.result(0, "done", run_dir="x")
    out = capsys.readouterr().out
    assert FAKE not in out
    objects = json_lines(out, "wait", 0)
    assert [o["event"] for o in objects] == ["status", "warning", "result"]
    assert objects[0]["status"] == "RUNNING" and objects[0]["t"] == 0.5 and isinstance(objects[0]["time"], float)
    assert objects[-1]["message"] == "done" and objects[-1]["run_dir"] == "x"


def test_a_failure_still_ends_with_a_result(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("push", json_mode=True)

    def body() -> int:
        raise TunixRtError("Kaggle refused the push of alice/k: quota", 5)

    with pytest.raises(TunixRtError):
        reporter.run(body, run_dir="r")
    (result,) = json_lines(capsys.readouterr().out, "push", 5)
    assert result["error"] == "Kaggle refused the push of alice/k: quota" and result["run_dir"] == "r"


def test_human_mode_prints_progress_on_stderr_and_the_result_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter("pull")
    reporter.event("downloaded", "pulled 3 files")
    reporter.result(0, "outputs in x")
    captured = capsys.readouterr()
    assert captured.err == "pulled 3 files\n" and captured.out == "outputs in x\n"
    local = Reporter("bundle", to_stdout=True)
    local.event("bundle", "bundle: x")
    local.result(0, "  kernel id y")
    assert capsys.readouterr().out == "bundle: x\n  kernel id y\n"


def test_a_kernel_console_verb_shows_its_own_lines_as_console_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """rehearse --json: tunix-rt's lines are log events among the kernel's (the shape issue 10 defined)."""
    with Reporter("rehearse", json_mode=True, kernel_console=True, clock=Clock()) as reporter:
        reporter.event("backend", "backend: local", backend="local")
        reporter.stream.write("kernel says hi\n")
    reporter.result(0, "rehearsal r: complete", status="complete")
    objects = json_lines(capsys.readouterr().out, "rehearse", 0)
    assert [(o["event"], o.get("line")) for o in objects] == [
        ("log", "backend: local"), ("log", "kernel says hi"), ("result", None)]
    assert json.dumps(objects[-1]).count('"status": "complete"') == 1
