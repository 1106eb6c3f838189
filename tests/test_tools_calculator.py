"""The calculator computes arithmetic exactly and refuses everything else, quickly."""

import time

import pytest

from picochat.errors import UserError
from picochat.tools import Calculator, ToolResult
from picochat.tools.sandbox import PythonSandbox, get_tool


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("12*(3+4)", "84"),
        ("2**100", str(2**100)),
        ("7//2", "3"),
        ("-7 % 3", "2"),
        ("7/2", "3.5"),
        ("12/4", "3"),  # integral floats print without ".0"
        ("0.1+0.2", "0.3"),  # 15 significant digits hide binary noise
        ("2**-2", "0.25"),
        ("-(+3)", "-3"),
        ("1_000 * 3", "3000"),
        ("  1,234,567 + 1 = ", "1234568"),  # model-isms: whitespace, thousands separators, trailing "="
        ("3 × 4 ÷ 2 − 1", "5"),
    ],
)
def test_arithmetic(expression, expected):
    assert Calculator().run(expression) == ToolResult(ok=True, output=expected)


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("x + 1", "the name 'x'"),
        ("__import__('os')", "function call"),
        ("(1).real", "attribute access"),
        ("(2).__class__", "attribute access"),
        ("[1, 2][0]", "not allowed"),
        ("'a' * 3", "only int and float"),
        ("True + 1", "only int and float"),
        ("2j * 2", "only int and float"),
        ("[i for i in range(3)]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("1 < 2", "not allowed"),
        ("1 << 100", "not allowed"),
        ("(1, 2)", "tuple"),
        ("2 ^ 3", "write 2**10"),
        ("import os", "not an arithmetic expression"),
        ("", "empty"),
    ],
)
def test_refuses_everything_but_arithmetic(expression, reason):
    result = Calculator().run(expression)
    assert not result.ok
    assert result.output.startswith("error: ")
    assert reason in result.output


@pytest.mark.parametrize(
    "expression", ["9**9**9", "10**10**10", "(10**600) * (10**600)", "2**4000", "(-3)**5000"]
)
def test_refuses_huge_results_before_computing(expression):
    start = time.monotonic()
    result = Calculator(max_digits=1000).run(expression)
    assert time.monotonic() - start < 0.5
    assert not result.ok
    assert "digits" in result.output


@pytest.mark.parametrize(
    "expression, message",
    [
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("1e308 * 10", "result is too large"),
        ("2.0 ** 5000", "result is too large"),
        ("(-8) ** (1/3)", "result is not a real number"),
    ],
)
def test_arithmetic_errors(expression, message):
    assert Calculator().run(expression) == ToolResult(ok=False, output=f"error: {message}")


def test_bounds_input_length_and_nesting():
    assert "limit is 50" in Calculator(max_input_chars=50).run("1+" * 30 + "1").output
    assert not Calculator().run("(" * 300 + "1" + ")" * 300).ok
    assert not Calculator(max_input_chars=10_000).run("-" * 5000 + "1").ok


def test_deterministic():
    assert len({Calculator().run("2**0.5 * 3/7").output for _ in range(5)}) == 1


def test_max_digits_is_checked():
    with pytest.raises(UserError, match="max_digits"):
        Calculator(max_digits=10**6)


def test_get_tool():
    assert isinstance(get_tool("calculator"), Calculator)
    assert isinstance(get_tool("python", unsafe=True), PythonSandbox)  # unsafe only where no walls exist
    assert get_tool("calculator").run("6*7").output == "42"
    with pytest.raises(UserError, match="calculator, python"):
        get_tool("bash")
