"""Raw log → kaggle_output_log.txt: order, folding, stderr marks, redaction, damaged logs, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_fixtures import kaggle_log_text
from tunix_rt import logtext
from tunix_rt.logtext import NOTE_PREFIX, convert_log, detect_format

FAKE_KEY = "0123456789abcdef0123456789abcdef"


def rec(t: float, data: str, stream: str = "stdout") -> dict:
    return {"stream_name": stream, "time": t, "data": data}


def convert(
    tmp_path: Path, raw_text: str | None, name: str = "kernel.log", **kw
) -> tuple[str, logtext.LogStats]:
    raw = None
    if raw_text is not None:
        raw = tmp_path / name
        raw.write_text(raw_text, encoding="utf-8")
    out = tmp_path / "kaggle_output_log.txt"
    stats = convert_log(raw, out, **kw)
    return out.read_text(encoding="utf-8"), stats


def test_kaggle_log_time_ordered_with_stderr_marked(tmp_path: Path) -> None:
    text, stats = convert(
        tmp_path,
        kaggle_log_text(
            [
                rec(0.1, "first\n"),
                rec(0.3, "third\n"),
                rec(0.2, "second (written late)\n", "stderr"),
                rec(0.4, "fourth\n"),
            ]
        ),
    )
    assert text == "first\n[stderr] second (written late)\nthird\nfourth\n"
    assert stats.format == "kaggle-json" and stats.records == 4 and not stats.truncated


def test_progress_bar_folded_to_last_state(tmp_path: Path) -> None:
    bar = "".join(f"\r{p:3d}%|{'#' * (p // 10):<10}| {p}/100" for p in range(0, 101, 10))
    text, _ = convert(
        tmp_path, kaggle_log_text([rec(1, "epoch 1\n"), rec(2, bar), rec(3, "\n"), rec(4, "done\r\n")])
    )
    assert text == "epoch 1\n100%|##########| 100/100\ndone\n"


def test_partial_lines_joined_per_stream(tmp_path: Path) -> None:
    text, _ = convert(
        tmp_path,
        kaggle_log_text(
            [
                rec(1, "loss "),
                rec(1.5, "warning\n", "stderr"),
                rec(2, "2.31\nnext"),
                rec(3, " line\n"),
            ]
        ),
    )
    assert text.splitlines() == ["[stderr] warning", "loss 2.31", "next line"]


def test_credentials_redacted_from_env_and_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    text, _ = convert(
        tmp_path,
        kaggle_log_text(
            [
                rec(1, f"key is {FAKE_KEY}\n"),
                rec(2, "Authorization: Bearer KGAT_abcdefghijklmnop\n", "stderr"),
                rec(3, '{"username": "alice", "key": "fedcba9876543210fedcba9876543210"}\n'),
                rec(
                    4, "KAGGLE_KEY=" + FAKE_KEY[:10]
                ),  # split across records: redacted once the line is whole
                rec(5, FAKE_KEY[10:] + "\n"),
            ]
        ),
    )
    assert FAKE_KEY not in text and "KGAT_" not in text and "fedcba98" not in text
    assert text.count("[REDACTED]") == 4


def test_truncated_log_keeps_what_it_can(tmp_path: Path) -> None:
    full = kaggle_log_text(
        [rec(1, "alpha\n"), rec(2, "beta\n"), rec(3, "gamma is a long line that gets cut\n")]
    )
    cut = full[: full.index("gets cut")]
    text, stats = convert(tmp_path, cut)
    lines = text.splitlines()
    assert lines[:3] == ["alpha", "beta", "gamma is a long line that"]
    assert stats.truncated and stats.salvaged == 1
    assert lines[-1].startswith(NOTE_PREFIX) and "truncated" in lines[-1]


def test_truncated_log_cut_inside_an_escape(tmp_path: Path) -> None:
    full = kaggle_log_text([rec(1, "ok\n"), rec(2, "caf\u00e9 \u2603 snow\n")])
    cut = full[: full.index("\\u2603") + 4]  # ends in "\u26"
    text, stats = convert(tmp_path, cut)
    assert text.splitlines()[:2] == ["ok", "café "]
    assert stats.truncated


def test_damaged_line_is_skipped_and_counted(tmp_path: Path) -> None:
    good_a = '{"stream_name":"stdout","time":1,"data":"a\\n"}'
    good_b = '{"stream_name":"stdout","time":2,"data":"b\\n"}'
    raw = f"[{good_a}\n,{{garbage\n,{good_b}]"
    text, stats = convert(tmp_path, raw)
    assert text.splitlines()[:2] == ["a", "b"]
    assert stats.skipped == 1 and "1 unreadable record" in text


def test_several_objects_on_one_line(tmp_path: Path) -> None:
    raw = json.dumps([rec(1, "x\n"), rec(2, "y\n", "stderr")])  # the whole array on one line
    text, _ = convert(tmp_path, raw)
    assert text == "x\n[stderr] y\n"


@pytest.mark.parametrize("raw", ["", "   \n", "[]", "[\n]"])
def test_empty_log_gives_a_note_not_an_empty_file(tmp_path: Path, raw: str) -> None:
    text, _ = convert(tmp_path, raw)
    assert text.startswith(NOTE_PREFIX) and "no console output" in text and text.endswith("\n")


def test_only_the_opening_bracket(tmp_path: Path) -> None:
    text, stats = convert(tmp_path, "[")
    assert stats.truncated and "no console output" in text


def test_missing_raw_log(tmp_path: Path) -> None:
    text, stats = convert(tmp_path, None)
    assert stats.format == "missing" and "no raw console log" in text


def test_plain_text_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "tok-abcdef-123456")
    raw = (
        "\ufeffInput Notebook: bundle/kaggle_submission.ipynb\n"
        "Executing:   0%|          | 0/9 [00:00<?, ?cell/s]\rExecuting: 100%|##########| 9/9\n"
        "\x1b[32mgreen\x1b[0m token=tok-abcdef-123456\nlast line without newline"
    )
    text, stats = convert(tmp_path, raw, name="console.log")
    assert stats.format == "text"
    assert text == (
        "Input Notebook: bundle/kaggle_submission.ipynb\nExecuting: 100%|##########| 9/9\n"
        "green token=[REDACTED]\nlast line without newline\n"
    )


def test_text_starting_with_a_bracket_is_not_kaggle_json(tmp_path: Path) -> None:
    raw = tmp_path / "console.log"
    raw.write_text("[I 2026-11-25 papermill] Executing notebook\n")
    assert detect_format(raw) == "text"
    raw.write_text('[{"stream_name":"stdout","time":0,"data":"x"}]')
    assert detect_format(raw) == "kaggle-json"


def test_streaming_across_blocks_and_reorder_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks and window so the test crosses many block boundaries with a small log.
    monkeypatch.setattr(logtext, "BLOCK_BYTES", 300)
    monkeypatch.setattr(logtext, "REORDER_WINDOW", 8)
    records = [rec(i, f"line {i}\n", "stderr" if i % 5 == 0 else "stdout") for i in range(200)]
    records[50], records[53] = records[53], records[50]  # out of order within the window
    records.insert(190, rec(10.5, "very late\n"))  # far beyond the window: kept where it arrived
    text, stats = convert(tmp_path, kaggle_log_text(records))
    lines = text.splitlines()
    body = [ln for ln in lines if not ln.startswith(NOTE_PREFIX)]
    assert len(body) == 201
    order = [int(ln.split()[-1]) for ln in body if "very late" not in ln]
    assert order == list(range(200))
    assert body.index("very late") > 150
    assert stats.late == 1 and "out of time order" in lines[-1]
    assert "[stderr] line 5" in body


def test_endless_progress_bar_is_folded_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logtext, "MAX_PENDING_CHARS", 64)
    records = [rec(i, f"\rstep {i:05d}") for i in range(500)] + [rec(501, "\nafter\n")]
    text, _ = convert(tmp_path, kaggle_log_text(records))
    assert text == "step 00499\nafter\n"


def test_overlong_line_without_newline_is_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtext, "MAX_PENDING_CHARS", 50)
    text, _ = convert(tmp_path, kaggle_log_text([rec(i, "x" * 20) for i in range(10)]))
    assert text.replace("\n", "") == "x" * 200


def test_output_written_atomically(tmp_path: Path) -> None:
    (tmp_path / "kernel.log").write_text(kaggle_log_text([rec(1, "hello\n")]))
    out = tmp_path / "kaggle_output_log.txt"
    convert_log(tmp_path / "kernel.log", out)
    assert out.read_text() == "hello\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
