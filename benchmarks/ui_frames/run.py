"""How the Playground's live frame rate costs a run's speed, measured through a real browser.

The app is served on the default model and driven by Debian's Chromium (Playwright, the browser test's set-up):
the prompt "import os" and 512 new tokens, AR (one token a step: the most frames a run can send), once per
frame interval in turn, the intervals alternating over ROUNDS rounds on the same loaded app. Each line gives
the wall time from the Generate click to the finished board, the frames the browser saw (a MutationObserver
on the board's data-frames) and the tokens/s the statistics show. 0 sends every step, as the app did before
ui.panel_common.FramePacer. Run (about 4 minutes on 2 cores):

  OMP_NUM_THREADS=1 python benchmarks/ui_frames/run.py > benchmarks/ui_frames/run.txt
"""

import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from twotower.engine import load_engine  # noqa: E402
from ui.app import build_demo, launch_local  # noqa: E402
from ui.panel_handlers import PanelHandlers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_ui_browser import BOARD, CHROMIUM, CHROMIUM_ARGS, set_slider  # noqa: E402

INTERVALS_S, ROUNDS, NEW_TOKENS = (0.0, 0.04, 0.2), 3, 512
WATCH = """() => { window.__seen = new Set(); if (window.__obs) return;
  window.__obs = new MutationObserver(() => { const b = document.querySelector('#view .tt-board');
    if (b) window.__seen.add(b.dataset.frames); });
  window.__obs.observe(document.body, {subtree: true, childList: true, attributes: true}); }"""


def settle(page) -> None:
    page.wait_for_timeout(500)
    page.wait_for_selector(f'{BOARD}[data-done="1"]', timeout=300_000)


def main() -> None:
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}")
    demo = build_demo(load_engine())
    url = launch_local(demo)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#generate")
        page.locator("#prompt textarea").fill("import os\n")
        set_slider(page, "max-new", NEW_TOKENS)
        page.get_by_label("AR", exact=True).check()  # a mode change re-runs the prompt: let it finish
        settle(page)
        page.wait_for_timeout(1000)
        page.evaluate(WATCH)
        for r in range(ROUNDS):
            for interval in INTERVALS_S:
                PanelHandlers.frame_interval_s = interval  # read by each run's FramePacer
                page.evaluate("() => { window.__seen = new Set(); }")
                start = time.perf_counter()
                page.locator("#generate").click()
                settle(page)
                wall = time.perf_counter() - start
                stats = page.inner_text("#stats")
                tps = next(line.split("\t")[-1] for line in stats.splitlines() if line.startswith("tokens / s"))
                print(f"round {r + 1}  interval {interval:4.2f} s  wall {wall:5.1f} s  frames seen "
                      f"{page.evaluate('window.__seen.size'):4d}  tokens/s shown {tps}", flush=True)
                page.wait_for_timeout(1000)
        browser.close()
    demo.close()


if __name__ == "__main__":
    main()
