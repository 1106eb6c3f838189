"""The report page in a real headless browser (Debian's chromium, driven by Selenium): it renders without
console errors, never scrolls sideways at laptop or phone width, and its summary card shows report.json's
figures."""

import pytest
from test_report import full_report, same, shown  # noqa: F401 (a fixture)
from test_serve_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (a fixture: the chat page's)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


def resolve(facts: dict, path: str):
    for key in path.split("."):
        facts = facts[key]
    return facts


def sideways_scroll(driver) -> int:
    return driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")


def test_the_page_renders_fits_and_its_card_shows_the_json(full_report, browser):  # noqa: F811 (fixtures)
    browser.set_window_size(1000, 800)
    browser.get((full_report.home / "reports/report.html").as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    assert sideways_scroll(browser) <= 0

    figures = browser.execute_script(
        "return [...document.querySelectorAll('#summary [data-json]')]"
        ".map(cell => [cell.dataset.json, cell.textContent])"
    )
    paths = [path for path, _ in figures]
    for expected in ("model.parameters", "results.val_bpb.value", "results.core.value", "results.rl.gain"):
        assert expected in paths
    assert any(p.startswith("results.chat_probes.") for p in paths)
    assert any(p.startswith("results.chat_suite.") for p in paths)
    for path, text in figures:
        value = resolve(full_report.facts, path)
        if " ± " in text:  # a gain and its error: the value to the error's decimals
            assert abs(shown(text) - value) <= 0.5 * 10 ** -len(text.split(".")[-1])
        else:
            assert same(text, float(value), digits=3 if "%" in text or text.endswith(" s") else 4), path

    images = browser.execute_script(
        "return [...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().width])"
    )
    assert len(images) == 3 and all(0 < shown_width <= natural for natural, shown_width in images)

    browser.set_window_size(500, 900)  # about the narrowest a headless window goes: a phone's width
    assert sideways_scroll(browser) <= 0
