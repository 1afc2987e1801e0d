"""Screenshots of the playground on the embedded default model, for the README.

  python scripts/screenshots.py      # writes assets/screenshots/default_*.png

Starts the app in-process on a free local port, drives Debian's Chromium through Playwright (never a
downloaded browser), types a prompt, generates, and captures the Playground and Race tabs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "assets" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PROMPT = "import os\n\n\ndef read_lines(path):\n    "


def main() -> int:
    from playwright.sync_api import sync_playwright

    from twotower.engine import load_engine
    from ui.app import build_demo, launch_local

    demo = build_demo(load_engine())
    url = launch_local(demo)
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(180_000)
        page.goto(url)
        page.wait_for_selector("#generate")
        page.locator("#prompt textarea").fill(PROMPT)
        box = page.locator("#max-new input[type=number]")
        box.fill("96")
        box.press("Tab")
        page.locator("#generate").click()
        page.wait_for_selector('#view .tt-board[data-done="1"]')
        page.wait_for_timeout(1500)
        page.screenshot(path=str(OUT / "default_playground.png"), full_page=True)
        page.get_by_role("tab", name="Race").click()
        page.locator("#race-button").click()  # by id: "Download the Race (CSV)" is a button named Race too
        # one "× AR" card per mode once the race is over (AR's own card included)
        page.wait_for_function("() => (document.body.innerText.match(/× AR/g) || []).length >= 2"
                               " && !document.body.innerText.includes('timing ')", timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(OUT / "default_race.png"), full_page=True)
        browser.close()
    demo.close()
    print("wrote", OUT / "default_playground.png", OUT / "default_race.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
