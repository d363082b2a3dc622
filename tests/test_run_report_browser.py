"""report.html in a real browser (headless Chromium over the DevTools protocol, tests/chromium.py).

The report is served from a local HTTP server and loaded in a fresh profile. Checked: the server saw one
request (the page) and the browser made no other network request and had none fail, no script ran or
failed, the loss plot's box has a drawn curve in it (pixels of the train line's colour in a screenshot of
that box), and the item table has one row per eval item, the hostile prompt shown as text. A control page
with one external image proves the request check can fail.

Without Chromium the test skips with the reason, except under CI (``CI`` set), where it fails: `.ci/run`
installs Debian's ``chromium``.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from chromium import Browser, find_chromium, serve_folder
from run_fixtures import HOSTILE_PROMPT, kaggle_block, write_trained_run
from tunix_rt.run_report import REPORT_HTML, TRAIN_COLOR, write_report

N_ITEMS = 12
PROBE = """JSON.stringify({
  rows: document.querySelectorAll('#eval-items tbody tr').length,
  firstPrompt: document.querySelector('#eval-items tbody tr td.prompt').textContent,
  scripts: document.scripts.length,
  images: Array.from(document.images).map(i => ({id: i.id, complete: i.complete, width: i.naturalWidth,
                                                  shown: i.getBoundingClientRect().width})),
  external: Array.from(document.querySelectorAll('[src],[srcset],link[href],[poster],[data]'))
    .map(e => e.getAttribute('src') || e.getAttribute('srcset') || e.getAttribute('href') ||
              e.getAttribute('poster') || e.getAttribute('data'))
    .filter(u => !u.startsWith('data:')),
  resources: performance.getEntriesByType('resource').map(e => e.name),
})"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "no Chromium found (apt-get install chromium, or set TUNIX_RT_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    return binary


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _curve_pixels(png: bytes) -> tuple[int, int, float]:
    """(pixels of the train line's colour, all pixels, share of non-white pixels) of a screenshot."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array(_rgb(TRAIN_COLOR))
    line = int((np.abs(img - target).sum(axis=2) < 40).sum())
    inked = float((img.sum(axis=2) < 3 * 245).mean())
    return line, img.shape[0] * img.shape[1], inked


def test_report_loads_offline_with_its_plot_and_one_row_per_item(chromium: str, tmp_path: Path) -> None:
    run_dir = write_trained_run(tmp_path / "m33_v1", platform="kaggle", kaggle=kaggle_block(), n_items=N_ITEMS,
                                n_correct=7, eval_every=10)
    write_report(run_dir)
    started = time.monotonic()
    with serve_folder(run_dir) as (base, served), Browser(chromium) as browser:
        visit = browser.visit(f"{base}/{REPORT_HTML}", probe=PROBE, clip_to="#loss-plot")
        # Control: the same page with one external image must be caught by the same checks.
        bad = (run_dir / REPORT_HTML).read_text(encoding="utf-8").replace(
            "</main>", '<img src="http://127.0.0.1:9/tracker.png"></main>')
        (run_dir / "control.html").write_text(bad, encoding="utf-8")
        control = browser.visit(f"{base}/control.html", probe=PROBE)
    took = time.monotonic() - started

    probe = json.loads(visit.probe)
    assert served[0] == f"/{REPORT_HTML}" and served.count(f"/{REPORT_HTML}") == 1
    assert visit.network_requests == [f"{base}/{REPORT_HTML}"], visit.requests
    assert visit.failed == [] and visit.exceptions == [] and visit.console_errors == []
    assert probe["external"] == [] and probe["resources"] == [] and probe["scripts"] == 0
    assert probe["rows"] == N_ITEMS
    assert probe["firstPrompt"] == HOSTILE_PROMPT
    assert probe["images"] == [{"id": "loss-plot", "complete": True, "width": 1000, "shown": 1000}]
    line, total, inked = _curve_pixels(visit.screenshot)
    assert total == 1000 * 360  # the box is the image at its natural size
    print(f"plot box: {line} curve pixels, {inked:.1%} drawn")
    assert line > 500, f"only {line} pixels of the loss curve's colour in the plot's box"
    assert 0.02 < inked < 0.6, f"{inked:.1%} of the plot's box is drawn"

    assert [f["url"] for f in control.failed] == ["http://127.0.0.1:9/tracker.png"]
    assert json.loads(control.probe)["external"] == ["http://127.0.0.1:9/tracker.png"]
    assert served == [f"/{REPORT_HTML}", "/control.html"]
    print(f"browser check: {took:.1f} s for two page loads")


def test_finder_honours_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNIX_RT_CHROMIUM", "/opt/chrome/chrome")
    assert find_chromium() == "/opt/chrome/chrome"
    monkeypatch.delenv("TUNIX_RT_CHROMIUM")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_chromium() is None
