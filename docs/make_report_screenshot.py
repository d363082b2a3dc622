"""Make the README's picture of a run report: headless Chromium renders ``<RUN_DIR>/report.html`` and the
top of the page (header, scores, loss curve, the first eval items) is saved as a PNG.

    python docs/make_report_screenshot.py [RUN_DIR] [--output docs/report_screenshot.png] [--height 1500]

RUN_DIR defaults to the committed full rehearsal (submission_runs/sft_tiny_full). Needs Chromium (Debian's
``chromium``, or ``TUNIX_RT_CHROMIUM``); it is driven by ``tests/chromium.py``, the browser test's helper.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Browser, find_chromium, serve_folder  # noqa: E402

WIDTH = 1160  # the page's 1100 px column plus a little margin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=str(ROOT / "submission_runs" / "sft_tiny_full"),
                        help="run directory with report.html (default: submission_runs/sft_tiny_full)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "report_screenshot.png"), help="PNG to write")
    parser.add_argument("--height", type=int, default=1500, help="pixels of the page's top to keep")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "report.html").is_file():
        print(f"make_report_screenshot: error: {run_dir / 'report.html'} is missing; run `tunix-rt report "
              f"{run_dir}` first", file=sys.stderr)
        return 2
    binary = find_chromium()
    if binary is None:
        print("make_report_screenshot: error: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    from PIL import Image

    with serve_folder(run_dir) as (base, _), Browser(binary) as browser:
        visit = browser.visit(f"{base}/report.html", full_page=True, width=WIDTH, height=args.height)
    if visit.failed or visit.network_requests != [f"{base}/report.html"]:
        print(f"make_report_screenshot: error: the page made other requests: {visit.requests}", file=sys.stderr)
        return 1
    page = Image.open(io.BytesIO(visit.screenshot)).convert("RGB")
    top = page.crop((0, 0, min(WIDTH, page.width), min(args.height, page.height)))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    top.save(out, format="PNG", optimize=True)  # Pillow writes no time or software chunk by default
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {top.width}x{top.height} px) from {run_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
