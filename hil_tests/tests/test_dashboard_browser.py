"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's
chromedriver, against a running stack (Mosquitto, gateway, network ingest) with one virtual board running
the unmodified firmware. The page must show a new reading within 10 s without a reload, and the device
page must draw its plots; screenshots go to build/ (docs/img/dashboard.png is one of them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pinseal_devkit.devices import start_device
from pinseal_devkit.stack import Stack, wait_until
from pinseal_vboard import BoardHost

pytestmark = [pytest.mark.vm, pytest.mark.broker]

BUILD = Path(__file__).resolve().parents[2] / "build"
NEW_READING_WITHIN_S = 10


def chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("chromium and chromium-driver (Debian packages) are missing: run `make setup`")
    return browser, driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager never tries to download a browser or a driver.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: webdriver.Chrome, selector: str) -> str:
    """An element's text read inside the page in one step (the polling script replaces elements)."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector
    )
    return text if isinstance(text, str) else ""


def readings_shown(driver: webdriver.Chrome, kid: str) -> int:
    """The count the page shows now, read in one step inside the page: the polling script replaces the
    rows, so an element found first and read after could be gone (StaleElementReferenceException)."""
    text = driver.execute_script(
        "const c = document.querySelector(arguments[0]); return c ? c.textContent : '';",
        f'tr[data-kid="{kid}"] td.readings-count',
    )
    return int(text) if isinstance(text, str) and text.strip().isdigit() else -1


def test_dashboard_shows_new_readings_live_and_plots_them(tmp_path: Path, browser: webdriver.Chrome) -> None:
    stack = Stack(tmp_path / "stack", batch_interval_s=2)
    stack.prepare()
    host = BoardHost()
    board, info = start_device(
        host, stack, tmp_path / "flash", label="board1", bundling={"readings": 2, "max_wait_s": 10}
    )
    kid = info["key_id"]
    try:
        stack.start()
        board.reset()
        board.wait_for_output(b"pinseal: device ")
        assert wait_until(lambda: stack.gateway_status()["counts"]["readings"] >= 2, 60, 0.2), board.text()[
            -1500:
        ]

        browser.get(stack.gateway_url + "/")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "live").get_attribute("data-polls"))
        row = text_of(browser, f'tr[data-kid="{kid}"]')
        assert "board1" in row and "online" in row and "°C" in row and "hPa" in row, row
        assert "broker connected" in text_of(browser, "#broker")
        browser.execute_script("window.__pinsealSamePage = true;")  # gone if the page reloads
        before = readings_shown(browser, kid)
        assert before >= 2
        started = time.monotonic()
        WebDriverWait(browser, NEW_READING_WITHIN_S, poll_frequency=0.2).until(
            lambda d: readings_shown(d, kid) > before
        )
        took = time.monotonic() - started
        assert browser.execute_script("return window.__pinsealSamePage === true;"), "the page reloaded"
        after = readings_shown(browser, kid)
        print(f"new reading on the page {took:.1f} s after the first look ({before} -> {after} readings)")
        BUILD.mkdir(exist_ok=True)
        browser.save_screenshot(str(BUILD / "dashboard.png"))

        browser.get(f"{stack.gateway_url}/devices/{kid}")
        WebDriverWait(browser, 15).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#plots canvas")) >= 3
        )
        plotted = {
            name: int(points)
            for name, points in browser.execute_script(
                "return [...document.querySelectorAll('#plots .plot')]"
                ".map(e => [e.dataset.name, e.dataset.points]);"
            )
        }
        assert plotted["t"] >= 2 and plotted["p"] >= 2 and plotted["h:sht3x"] >= 2, plotted
        titles = browser.find_element(By.ID, "plots").text
        assert "temperature" in titles and "pressure" in titles and "humidity" in titles
        links = browser.find_elements(By.CSS_SELECTOR, "#bundles a[href^='/proofs/']")
        assert links, "no proof links on the device page"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        browser.save_screenshot(str(BUILD / "dashboard-device.png"))
        assert (BUILD / "dashboard.png").stat().st_size > 10_000
    finally:
        board.stop()
        host.close()
        stack.stop()
