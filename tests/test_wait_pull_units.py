"""Pure parts of wait and pull: the poll schedule and its call budget, and the output-name guard."""

from __future__ import annotations

import os
from pathlib import Path

from tunix_rt.pull import safe_target
from tunix_rt.wait import WaitOptions, interval, poll_calls

NINE_HOURS = 9 * 3600


def test_interval_starts_short_and_backs_off_to_the_cap() -> None:
    steps = [interval(k, 5.0, 60.0) for k in range(10)]
    assert steps[0] == 5.0 and steps == sorted(steps) and steps[-1] == 60.0


def test_call_budget_for_a_nine_hour_run() -> None:
    # Polling alone, cap 60 s: about 540 calls, completion seen at most 60 s late.
    plain = poll_calls(NINE_HOURS, 5.0, 60.0)
    assert 530 <= plain <= 550
    # With the log stream live the status poll is a safety net at twice the cap: about half the calls;
    # Kaggle cuts the stream after ~3 idle minutes (kaggle-cli PR #999) and each reconnect is a call: even a
    # cut every 180 s for 9 h (180 reconnects) keeps the total under 540 (bench/wait_cost.py measures it).
    with_stream = poll_calls(NINE_HOURS, 5.0, 120.0)
    assert with_stream + NINE_HOURS // 180 <= 540


def test_wait_options_from_flags(monkeypatch) -> None:
    monkeypatch.setenv("TUNIX_RT_STALE_GRACE_S", "3")
    opts = WaitOptions.from_args(None, 0.5, 0.1)
    assert opts.poll_min == 0.5 and opts.poll_max == 0.5 and opts.stale_grace_s == 3.0


def test_safe_target_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    assert safe_target(root, "output/run_result.json") == root / "output" / "run_result.json"
    assert safe_target(root, "./a.txt") == root / "a.txt"
    for bad in ("../x", "/etc/passwd", "a/../../x", "", ".", "a\\..\\x", "nul\x00"):
        assert safe_target(root, bad) is None, bad
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, root / "link")
    assert safe_target(root, "link/file.txt") is None
