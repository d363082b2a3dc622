"""automation/follow.py: a runner's written console becomes lines, then events shown live, plain or as JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from tunix_rt.follow import Follower, LineSink, fold
from tunix_rt.training.metric_line import format_line

FAKE_TOKEN = "KGAT_" + "0123456789abcdef" * 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25  # every look at the clock is a quarter second later
        return self.now


def test_sink_cuts_chunks_into_folded_clean_lines() -> None:
    lines: list[str] = []
    sink = LineSink(lines.append)
    sink.write("first li")
    sink.write("ne\nprogress 10%\rprogress 50%\rprogress 100%\n\x1b[31mred\x1b[0m\r\n")
    assert lines == ["first line", "progress 100%", "red"]
    sink.write("no newline at the end")
    assert len(lines) == 3
    sink.close()
    assert lines[-1] == "no newline at the end"


def test_fold_keeps_the_last_drawn_state() -> None:
    assert fold("a\rb\r") == "b" and fold("plain") == "plain" and fold("\r\r") == ""


def _metric(step: int) -> str:
    return format_line({"step": step, "total_steps": 4, "loss": 5.0 - step, "tokens_per_second": 100.0 * step,
                        "elapsed_s": float(step), "eta_s": float(4 - step), "device_kind": "cpu"})


def test_json_mode_prints_log_metric_and_result_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_TOKEN)  # the redactor knows the environment's secrets
    out = io.StringIO()
    with Follower("json", command="rehearse", out=out, clock=Clock()) as follower:
        follower.sink.write(f"backend: local\ntoken {FAKE_TOKEN}\n{_metric(1)}\n{_metric(4)}\n")
    follower.result(0, run_dir="x")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["log", "log", "metric", "metric", "result"]
    assert events[0]["line"] == "backend: local"
    assert FAKE_TOKEN not in out.getvalue() and "[REDACTED]" in events[1]["line"]
    assert (events[3]["step"], events[3]["loss"], events[3]["tokens_per_second"]) == (4, 1.0, 400.0)
    assert events[-1] == {"event": "result", "command": "rehearse", "exit_code": 0, "run_dir": "x",
                          "t": events[-1]["t"]}
    times = [e["t"] for e in events]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)


def test_plain_mode_prints_log_lines_and_a_progress_line_per_step() -> None:
    out = io.StringIO()
    with Follower("plain", command="rehearse", out=out, clock=Clock()) as follower:
        follower.sink.write(f"Executing Cell 11\n{_metric(2)}\ndone")
    lines = out.getvalue().splitlines()
    assert lines[0] == "Executing Cell 11"
    assert lines[1].startswith("step 2/4 (50%) · loss 3.0000 · 200 tokens/s")
    assert lines[2] == "done"  # the unterminated last line is not lost
    follower.result(0)  # no result object outside JSON mode
    assert len(out.getvalue().splitlines()) == 3


def test_live_mode_draws_the_panel_above_the_latest_log_lines() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, height=20, color_system=None)
    with Follower("live", command="rehearse", console=console, clock=Clock(), refresh_per_second=20) as follower:
        for i in range(30):
            follower.sink.write(f"log line {i}\n")
        follower.sink.write(_metric(3) + "\n")
    final = screen.getvalue().rsplit("training", 1)[-1]  # the last frame drawn
    assert "3 / 4" in final and "2.0000" in final and "300" in final
    assert "log line 29" in final and "log line 0\n" not in final  # only the tail that fits the screen
    assert final.index("ETA") < final.index("log line 29")  # panel first, then the log


def test_for_terminal_picks_the_mode() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Follower.for_terminal(json_mode=True, command="x", out=Tty()).mode == "json"
    assert Follower.for_terminal(json_mode=False, command="x", out=Tty()).mode == "live"
    assert Follower.for_terminal(json_mode=False, command="x", out=io.StringIO()).mode == "plain"


@pytest.mark.kernel
def test_rehearse_json_streams_the_trainers_steps_end_to_end(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A real local rehearsal with --json: every stdout line is an event; the trainer's progress lines are
    metric events equal to metrics.jsonl's rows, before the result; the run dir has its report."""
    from tunix_rt.cli import main

    run_dir = tmp_path / "m33_rehearsal"
    assert main(["rehearse", "--backend", "local", "--json", "--run-dir", str(run_dir)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and set(kinds[:-1]) == {"log", "metric"}
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    rows = [json.loads(line) for line in (run_dir / "outputs/output/metrics.jsonl").read_text().splitlines()]
    metrics = [{k: v for k, v in e.items() if k not in ("event", "t")} for e in events if e["event"] == "metric"]
    assert metrics == rows and [m["step"] for m in metrics] == [1, 2]
    assert metrics[-1]["total_steps"] == 2 and metrics[-1]["device_kind"] == "cpu"
    result = events[-1]
    assert result["exit_code"] == 0 and result["status"] == "complete"
    assert result["t"] >= max(e["t"] for e in events if e["event"] == "metric")
    assert not any("TUNIX_RT_METRIC" in e.get("line", "") for e in events)  # shown as metrics, not as log
    assert any("Smoke run completed successfully" in e.get("line", "") for e in events)
    assert [Path(p).name for p in result["report"]] == ["report.html", "loss.png"]
    assert all(Path(p).is_file() for p in result["report"])
