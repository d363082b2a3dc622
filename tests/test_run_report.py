"""automation/run_report.py + report_html.py: what report.html and loss.png show, escaping, determinism,
and what happens without outputs. Fixture runs come from the trainer's own writers (run_fixtures)."""

from __future__ import annotations

import base64
import html.parser
import json
import shutil
import struct
from pathlib import Path

import pytest
from run_fixtures import EVAL_SET_PATH, HOSTILE_PROMPT, kaggle_block, write_finished_run, write_trained_run
from tunix_rt.cli import main
from tunix_rt.errors import EXIT_USAGE, TunixRtError
from tunix_rt.evidence import fill_evidence
from tunix_rt.run_report import LOSS_PNG, REPORT_HTML, write_report

FAKE_TOKEN = "KGAT_" + "fedcba9876543210" * 2


class Page(html.parser.HTMLParser):
    """Tags and attributes of a page, and the text of the eval-item table's rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self._in_items = self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table" and dict(attrs).get("id") == "eval-items":
            self._in_items = True
        elif tag == "tbody" and self._in_items:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_items = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_body and self.rows:
            self.rows[-1].append(data)


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def test_report_shows_scores_curve_items_environment_and_provenance(tmp_path: Path) -> None:
    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block(), n_items=6,
                                n_correct=4)
    files = write_report(run_dir)
    text = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    png = (run_dir / LOSS_PNG).read_bytes()
    assert (files.html_bytes, files.png_bytes, files.items, files.points) == (len(text.encode()), len(png), 6, 9)
    page = Page(text)
    # One row per eval item, in order, with expected / predicted / result.
    assert len(page.rows) == 6
    assert [r[1] for r in page.rows] == [f"eval-{i:03d}" for i in range(1, 7)]
    assert page.rows[1][-1] == "✓ correct" and page.rows[5][-1] == "✗ wrong"
    assert "no answer" in page.rows[4]  # the malformed output
    # Scores with the eval-set size, environment, timings, Kaggle link, bundle sha.
    for piece in ("66.7%", "4 of 6 correct", "5 of 6 well formed", f"items in <code>{EVAL_SET_PATH}",
                  "jax 0.10.2", "flax 0.12.8", "cpu × 1 device(s)", "TpuV5E8", "alice/tunix-rt-m33</code> version 3",
                  "ab" * 32, "Timings by phase", ">compile<", "3.000", ">total<", "7.310"):
        assert piece in text, piece
    links = [a for tag, a in page.tags if tag == "a"]
    assert links == [{"href": "https://www.kaggle.com/code/alice/tunix-rt-m33"}]
    # Self-contained: no script, no stylesheet link, one image: the same PNG as loss.png, inline.
    assert not [tag for tag, _ in page.tags if tag in ("script", "iframe", "object", "embed")]
    imgs = [a for tag, a in page.tags if tag == "img"]
    assert imgs == [{"id": "loss-plot", "src": "data:image/png;base64," + base64.b64encode(png).decode(),
                     "width": "1000", "height": "360", "alt": "training loss over steps"}]
    assert [a for tag, a in page.tags if tag == "link"] == [{"rel": "icon", "href": "data:,"}]


def test_untrusted_text_is_escaped_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", FAKE_TOKEN)
    run_dir = write_trained_run(tmp_path / "m33_rehearsal")
    preds = run_dir / "outputs/output/predictions.jsonl"
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    rows[2]["raw_output"] = f"my token is {FAKE_TOKEN} </pre></details><script>x()</script>"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = (write_report(run_dir).html).read_text(encoding="utf-8")
    page = Page(text)
    assert HOSTILE_PROMPT in page.rows[0]  # shown as text, exactly
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=&quot;http://127.0.0.1:9/evil.png" in text
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert len([tag for tag, _ in page.tags if tag == "img"]) == 1
    assert FAKE_TOKEN not in text and "[REDACTED]" in text


def test_non_https_kaggle_url_is_not_a_link(tmp_path: Path) -> None:
    kaggle = {**kaggle_block(), "url": "javascript:alert(1)"}
    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle)
    page = Page(write_report(run_dir).html.read_text(encoding="utf-8"))
    assert not [a for tag, a in page.tags if tag == "a"]


def test_same_run_gives_the_same_bytes_wherever_it_lives(tmp_path: Path) -> None:
    a = write_trained_run(tmp_path / "a" / "m33_rehearsal", eval_every=10)
    b = write_trained_run(tmp_path / "b" / "m33_rehearsal", eval_every=10)
    write_report(a)
    write_report(b)
    first = [(a / name).read_bytes() for name in (REPORT_HTML, LOSS_PNG)]
    assert first == [(b / name).read_bytes() for name in (REPORT_HTML, LOSS_PNG)]
    write_report(a)
    assert first == [(a / name).read_bytes() for name in (REPORT_HTML, LOSS_PNG)]
    # No tool name/version or time in the PNG: only image chunks.
    assert set(png_chunks(first[1])) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}
    assert b"atplotlib" not in first[1]
    assert "eval loss at 4 step(s)" in first[0].decode()


def test_failed_run_without_outputs_still_gets_a_report_saying_so(tmp_path: Path) -> None:
    run_dir = write_finished_run(tmp_path / "m33_rehearsal", with_outputs=False)
    shutil.rmtree(run_dir / "outputs/output")
    fill_evidence(run_dir, failure="local rehearsal failed: papermill exit 1")
    files = write_report(run_dir)
    text = files.html.read_text(encoding="utf-8")
    assert (files.items, files.points) == (0, 0)
    assert 'class="badge failed"' in text and "papermill exit 1" in text
    assert "outputs/output/metrics.jsonl is not in this run directory: no loss curve" in text
    assert "No per-item table" in text
    assert png_chunks(files.png.read_bytes())[0] == b"IHDR"


def test_committed_evidence_keeps_its_report(tmp_path: Path) -> None:
    run_dir = write_trained_run(tmp_path / "m33_rehearsal")
    write_report(run_dir)
    before = (run_dir / REPORT_HTML).read_bytes()
    shutil.rmtree(run_dir / "outputs")  # what git keeps of a run: evidence + report
    with pytest.raises(TunixRtError) as exc:
        write_report(run_dir)
    assert exc.value.exit_code == EXIT_USAGE and "keeping it" in exc.value.message
    assert (run_dir / REPORT_HTML).read_bytes() == before
    # Without a report yet, one is drawn from the evidence alone.
    (run_dir / REPORT_HTML).unlink()
    text = write_report(run_dir).html.read_text(encoding="utf-8")
    assert "no per-item table" in text and "66.7%" in text


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block())
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run_dir / REPORT_HTML}" in out and "6 eval items, 9 loss points" in out
    assert main(["report", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert "no such run directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run_manifest.json: missing" in err
    assert not (empty / REPORT_HTML).exists()



def test_pull_writes_the_report_after_the_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunix_rt.engine import Context, run_flow
    from tunix_rt.progress import Reporter
    from tunix_rt.runstate import RunState
    from tunix_rt.stages import EvidenceStage

    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block(), fill=False)
    flow = run_flow([EvidenceStage()], Context(RunState.read(run_dir), Reporter("pull", json_mode=True)))
    assert flow.exit_code == 0 and flow.values["evidence"].status == "complete"
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["evidence", "report"]
    assert events[1]["path"] == str(run_dir / REPORT_HTML)
    assert len(Page((run_dir / REPORT_HTML).read_text(encoding="utf-8")).rows) == 6


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_json import json_lines

    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block())
    assert main(["report", str(run_dir), "--json"]) == 0
    (result,) = json_lines(capsys.readouterr().out, "report", 0)
    assert result["html"] == str(run_dir / REPORT_HTML) and (result["items"], result["loss_points"]) == (6, 9)
    assert main(["report", str(tmp_path / "nowhere"), "--json"]) == EXIT_USAGE
    (result,) = json_lines(capsys.readouterr().out, "report", EXIT_USAGE)
    assert "no such run directory" in result["error"]
