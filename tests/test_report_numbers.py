"""Numbers for people (picochat/report_html.py): by hand, and read back against the value over many."""

import math
import random

import pytest
from test_report import same, shown

from picochat.report_html import duration, people, percent, plus_minus, si, signed, significant


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.44068, "0.4407"),
        (75.09, "75.09"),
        (12345.6, "12,350"),
        (2.5, "2.5"),
        (0.0, "0"),
        (-0.008385, "-0.008385"),
        (1.2345e-6, "1.234e-06"),
        (1e-6, "1e-06"),
        (999.96, "1,000"),
    ],
)
def test_significant_by_hand(value, text):
    assert significant(value) == text


def test_the_other_forms_by_hand():
    assert duration(7.25) == "7.25 s" and duration(75.3) == "1:15" and duration(3723) == "1:02:03"
    assert si(8.4139e12, "FLOP") == "8.414 TFLOP" and si(1234) == "1.234 k" and si(512) == "512"
    assert percent(0.3125) == "31.3%" and percent(1.0) == "100%"
    assert signed(0.0267) == "+0.0267" and signed(-0.008385) == "-0.008385" and signed(0.0) == "0"
    assert plus_minus(0.08712, 0.01391) == "+0.087 ± 0.014" and plus_minus(-0.5, 0.1291) == "-0.50 ± 0.13"
    assert people(1234567) == "1,234,567" and people(None) == "–" and people(True) == "yes"


def test_what_is_shown_reads_back_as_the_value():
    rng = random.Random(0)
    for _ in range(500):
        x = rng.choice([-1, 1]) * 10 ** rng.uniform(-7, 13)
        assert same(significant(x), x) and same(signed(x), x)
        assert signed(x)[0] in "+-"
        count = abs(x) + 1  # SI prefixes are for counts: FLOPs, tokens, parameters
        assert same(si(count, "FLOP"), count) and len(si(count).split()[0].replace(",", "")) <= 5
        assert same(percent(abs(x) % 1), abs(x) % 1, digits=3) and percent(abs(x) % 1).endswith("%")
        seconds = abs(x) % 1e5
        assert abs(shown(duration(seconds)) - seconds) <= (0.5 if seconds >= 60 else seconds * 5e-3)
    for x in (3.14159, 31415.9, 0.00031415, 314159265.0):  # 4 significant digits, no more
        digits = significant(x).replace(",", "").replace(".", "").lstrip("0").rstrip("0")
        assert len(digits) == 4 and not math.isclose(shown(significant(x)), x, rel_tol=1e-6)
