"""The chat page in a real headless browser (Debian's chromium, driven by Selenium): a message gets a
streamed reply with its calculator call drawn as a tool box, a second turn carries the history, Stop cuts a
reply short and frees its slot on the server, New chat clears, and the page fits a phone-width screen.

Set PICOCHAT_SCREENSHOT=docs/serve.png to save a screenshot of the conversation (how the README's is made).
"""

import os
import shutil
import time

import httpx
import pytest
from test_serve_fixtures import live_server, make_scheduler, tiny_tokenizer, wait_until
from tiny_models import ScriptedModel

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)
QUESTION = "What is 2+3?"
WAIT_S = 30  # the longest any step of these tests may wait for the page


class SlowScriptedModel(ScriptedModel):
    """A scripted model that takes `delay_s` per forward pass, so a reply visibly streams."""

    def __init__(self, *args, delay_s: float):
        super().__init__(*args)
        self.delay_s = delay_s

    def forward(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return super().forward(*args, **kwargs)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def prompt_length(tok) -> int:
    return len(tok.render_for_completion([{"role": "user", "content": QUESTION}]))


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=900,700")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition)


def send(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def replies(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "[data-role=reply]")


def test_a_message_gets_a_streamed_reply_with_its_tool_call(browser, tok):
    from selenium.webdriver.common.by import By

    # turn 1: a calculator call, then text, then the end; later turns land in the tail: "b" × 60
    output = [tok.special_id("<|output_start|>"), *tok.encode("5"), tok.special_id("<|output_end|>")]
    script = [tok.special_id("<|python_start|>"), *tok.encode("2+3"), tok.special_id("<|python_end|>")]
    script += (
        [0] * len(output)
        + tok.encode(" It is 5, the sum of 2 and 3.")
        + [tok.special_id("<|assistant_end|>")]
    )
    script += tok.encode("b") * 60 + [tok.special_id("<|assistant_end|>")]
    model = SlowScriptedModel(script, prompt_length(tok), tok.vocab_size, delay_s=0.03)
    with live_server(make_scheduler(model, tok, slots=2, context=256)) as url:
        browser.get(url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "model").text == "picochat-test")
        send(browser, QUESTION)
        # streaming: the reply shows part of its text while it is still being written
        partial = wait(
            browser,
            lambda d: replies(d) and replies(d)[0].text and not replies(d)[0].get_attribute("data-done"),
        )
        assert partial
        wait(browser, lambda d: replies(d)[0].get_attribute("data-done") == "true")
        reply = replies(browser)[0]
        tool = reply.find_element(By.CSS_SELECTOR, "[data-role=tool-call]")
        assert tool.text == "calculator: 2+3 → 5"
        assert reply.text.endswith("It is 5, the sum of 2 and 3.")
        assert "<|" not in reply.text  # markers are drawn, not printed
        if os.environ.get("PICOCHAT_SCREENSHOT"):
            browser.save_screenshot(os.environ["PICOCHAT_SCREENSHOT"])

        send(browser, "And the next?")  # the second turn sends the whole history back
        wait(browser, lambda d: len(replies(d)) == 2 and replies(d)[1].get_attribute("data-done") == "true")
        second = replies(browser)[1].text
        assert second and set(second) == {
            "b"
        }  # (where in the tail it starts depends on the history's length)
        history = browser.execute_script("return history")
        assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
        assert history[1]["content"].startswith("<|python_start|>2+3<|python_end|><|output_start|>5")

        browser.find_element(By.ID, "new-chat").click()
        assert browser.execute_script("return history") == [] and not replies(browser)


def test_stop_cuts_a_reply_short_and_frees_its_slot(browser, tok):
    from selenium.webdriver.common.by import By

    endless = SlowScriptedModel(tok.encode("a"), prompt_length(tok), tok.vocab_size, delay_s=0.05)
    with live_server(make_scheduler(endless, tok, slots=2, context=1024)) as url:  # ~50 s if never stopped
        browser.get(url + "/")
        send(browser, QUESTION)
        wait(browser, lambda d: replies(d) and len(replies(d)[0].text) >= 3)
        assert httpx.get(url + "/health").json()["active_requests"] == 1
        stop = browser.find_element(By.ID, "stop")
        assert stop.is_displayed() and not browser.find_element(By.ID, "send").is_displayed()
        stop.click()
        wait(browser, lambda d: "(stopped)" in d.find_element(By.ID, "log").text)
        shown = replies(browser)[0].text
        assert set(shown) == {"a"} and len(shown) < 900
        assert browser.find_element(By.ID, "send").is_displayed()
        assert wait_until(lambda: httpx.get(url + "/health").json()["active_requests"] == 0, timeout_s=WAIT_S)


def test_the_page_fits_a_phone(browser, tok):
    from selenium.webdriver.common.by import By

    model = ScriptedModel(
        tok.encode("A reply that is long enough to wrap on a narrow screen. ") * 3, 1, tok.vocab_size
    )
    with live_server(make_scheduler(model, tok, slots=1, context=128)) as url:
        browser.set_window_size(390, 844)  # a phone in portrait
        browser.get(url + "/")
        send(browser, "a question long enough to need wrapping on a phone screen, surely")
        wait(browser, lambda d: replies(d) and replies(d)[0].get_attribute("data-done") == "true")
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        for element_id in ("input", "send", "temperature", "new-chat"):
            rect = browser.find_element(By.ID, element_id).rect
            assert rect["x"] >= 0 and rect["x"] + rect["width"] <= width, element_id
