"""Small helpers to read the pages the way a person sees them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CONNECTED_JS = "return !!(window.socket && window.socket.connected) && document.readyState === 'complete'"


def wait(driver: WebDriver, condition: Callable[[], object], timeout: float = 5.0, what: str = '') -> None:
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _d: condition())
    except Exception as e:  # TimeoutException, or a stale element while the page changes
        raise AssertionError(f'not within {timeout} s: {what or condition}') from e


def open_page(driver: WebDriver, url: str) -> None:
    """Load a page and wait until its websocket is up, so server-side changes reach it from now on."""
    driver.get(url)
    wait(driver, lambda: driver.execute_script(CONNECTED_JS), 10, f'{url} connected')


def stay_connected(driver: WebDriver, seconds: float, timeout: float) -> None:
    """Wait until the page has held its websocket for `seconds` (after a restart it may reload first)."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        try:
            ok = driver.execute_script(CONNECTED_JS)
        except Exception:  # noqa: BLE001 - the page is reloading
            ok = False
        if not ok:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.05)
    raise AssertionError(f'the page did not reconnect within {timeout} s')


def tile(driver: WebDriver, machine_id: int) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-machine="{machine_id}"]')


def tiles(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, '[data-machine]')


def status(driver: WebDriver, machine_id: int) -> str | None:
    return tile(driver, machine_id).get_attribute('data-status')


def counter(driver: WebDriver, key: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'[data-counter="{key}"] .fp-stat-value').text.strip()


def tile_names(driver: WebDriver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '[data-machine] .fp-tile-name')]


def screenshot(driver: WebDriver, path: Path) -> None:
    time.sleep(0.3)  # let fonts and transitions settle
    driver.save_screenshot(str(path))


def overflowing_elements(driver: WebDriver) -> list[str]:
    """Visible elements that stick out on the right of the viewport (what a person would have to scroll to)."""
    return driver.execute_script('''
        const width = window.innerWidth, out = [];
        for (const e of document.body.querySelectorAll('*')) {
            const r = e.getBoundingClientRect();
            if (r.width > 0 && r.height > 0 && r.right > width + 1) out.push(e.tagName + '.' + e.className);
        }
        return out;''')
