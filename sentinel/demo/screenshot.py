"""A screenshot of a sidecar page in headless Chromium (Debian's), for the demo report."""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, path: Path, width: int = 1500, height: int = 1100) -> Path | None:
    """Returns the path, or None when no Chromium or Playwright is installed (the report says so)."""
    exe = chromium_path()
    if exe is None:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path
