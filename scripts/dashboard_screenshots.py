"""Screenshots of optuna-dashboard's study page and a trial's page, in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by ``selenium``), for the docs:

    iasf-search --space search_spaces/vision.yaml --timeout 300
    iasf-search dashboard --space search_spaces/vision.yaml --port 8080 &
    python scripts/dashboard_screenshots.py http://127.0.0.1:8080/dashboard/studies/1 docs/img

writes ``study-page.png`` (the study page: its plots), ``study-note.png`` (the study note) and ``trial-page.png``
(the engine's pick). ``tests/results/test_dashboard.py`` drives Chromium through :func:`chromium`, as this does.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
"""Headless, as root, on a machine with no network: without the background-networking flags Chromium keeps trying hosts."""


def missing() -> str | None:
    """Why no browser can be driven here (None: Chromium, its driver and selenium are all present)."""
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        return "no Chromium (Debian: apt-get install chromium chromium-driver)"
    if shutil.which("chromedriver") is None and not Path(CHROMEDRIVER).exists():
        return "no chromedriver (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (pip install selenium)"
    return None


def chromium(width: int = 1400, height: int = 2000):
    """A headless Chromium driven by selenium, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or CHROMEDRIVER))


def wait_for_text(driver, text: str, timeout: float = 30.0) -> None:
    """Wait until the page's text holds ``text`` (the dashboard draws after its API answers)."""
    deadline = time.monotonic() + timeout
    while text not in driver.find_element("tag name", "body").text:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed {text!r}")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study_page", help="the study page's address, as `iasf-search dashboard` prints it")
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    try:
        driver.set_window_size(1400, 1100)
        driver.get(args.study_page + "/note")
        wait_for_text(driver, "The engine's pick")
        pick = re.search(r"The engine's pick: trial #(\d+)", driver.find_element("tag name", "body").text)
        driver.save_screenshot(str(args.out / "study-note.png"))
        driver.set_window_size(1400, 3300)  # Optuna's history, importance and timeline, then the NAS plots
        driver.get(args.study_page)
        wait_for_text(driver, "What matters")
        time.sleep(2)  # plotly finishes drawing
        driver.save_screenshot(str(args.out / "study-page.png"))
        if pick:
            driver.set_window_size(1400, 1500)
            driver.get(f"{args.study_page}/trials?numbers={pick.group(1)}")
            wait_for_text(driver, "Artifacts")
            time.sleep(1)
            driver.save_screenshot(str(args.out / "trial-page.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
