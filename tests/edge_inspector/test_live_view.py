"""The live view in a real headless Chromium (Debian's chromium and chromium-driver) while the agent runs on a video.

The page's screenshot is kept as a CI artefact: ``$EDGE_INSPECTOR_ARTIFACTS``
or ``artifacts/`` at the top of the repository.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_process import agent_config, start_agent, stop_agent, video
from mqtt_broker import MosquittoBroker, free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(os.environ.get("EDGE_INSPECTOR_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _frame_number(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.ID, "frame").get_attribute("data-number") or 0)


def test_live_view_shows_the_line(tmp_path: Path, tiny_bundle: Path, browser: webdriver.Chrome) -> None:
    port = free_port()
    with MosquittoBroker() as broker:
        config = agent_config(
            tmp_path, tiny_bundle, broker, video(tmp_path, 21), camera={"fps": 4, "loop": True}, http={"port": port}
        )
        agent = start_agent(config, tmp_path)
        try:
            # the page re-renders its lists as messages arrive: an element read mid-render is retried
            wait = WebDriverWait(browser, 60, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
            wait.until(lambda _: _listening(port))
            browser.get(f"http://127.0.0.1:{port}/")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#feed li")) >= 5)
            wait.until(lambda d: _frame_number(d) > 0)
            first_number = _frame_number(browser)
            first = _pixels(browser)
            wait.until(lambda d: _frame_number(d) > first_number)
            second = _pixels(browser)
            assert second != first  # the picture follows the line, not only its number

            seqs = wait.until(
                lambda d: [int(li.get_attribute("data-seq")) for li in d.find_elements(By.CSS_SELECTOR, "#feed li")]
            )
            assert seqs == sorted(seqs, reverse=True) and len(seqs) <= 50  # newest first
            wait.until(lambda d: "broker connected" in d.find_element(By.ID, "broker").text)
            wait.until(lambda d: "cam0 streaming" in d.find_element(By.ID, "cameras").text)
            wait.until(lambda d: sum(int(td.text) for td in d.find_elements(By.CSS_SELECTOR, "#counters td.n")) >= 5)
            # the shown frame's label is one of the feed's verdicts
            wait.until(
                lambda d: (
                    d.find_element(By.ID, "label").text
                    in {
                        li.find_elements(By.TAG_NAME, "span")[2].text
                        for li in d.find_elements(By.CSS_SELECTOR, "#feed li")
                    }
                )
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "live_view.png"))
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()


def _pixels(driver: webdriver.Chrome) -> list[int]:
    """The shown frame's pixels, as the page decoded them (RGBA, read back through a canvas)."""
    return driver.execute_script(
        """const img = document.getElementById("frame");
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(img, 0, 0);
        return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);"""
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
