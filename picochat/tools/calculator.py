"""The safe calculator, and `ToolResult`, what every tool returns to the engine.

The expression is parsed with `ast` and evaluated by walking the tree ourselves, so no Python code ever
runs. Integers are bounded in digits *before* a power or product is computed (`9**9**9` is refused at once)
and the walk in time. Accepted model-isms: a trailing "=", × ÷ − for * / -, and separators "1,234,567".
"""

import ast
import math
import operator
import re
import time
from dataclasses import dataclass

from picochat.errors import UserError

BINARY_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY_OPERATORS = {ast.UAdd: operator.pos, ast.USub: operator.neg}
# Python refuses to turn longer integers into text (sys.int_info.str_digits_check_threshold, 4300).
MAX_PRINTABLE_DIGITS = 4000
THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class ToolResult:
    """One tool call's outcome. `output` goes between <|output_start|> and <|output_end|>: the result, or a
    short "error: ..." line, so the model sees its mistake and can try again."""

    ok: bool
    output: str


class CalculatorError(Exception):
    """An expression refused or not computable; the message is shown to the model."""


class Calculator:
    """Evaluates arithmetic expressions: + - * / // % ** and unary +/- on int and float literals."""

    def __init__(self, max_digits: int = 1000, timeout_s: float = 1.0, max_input_chars: int = 1000):
        if not 1 <= max_digits <= MAX_PRINTABLE_DIGITS:
            raise UserError(f"max_digits={max_digits} is out of range: use 1 to {MAX_PRINTABLE_DIGITS}")
        self.max_digits, self.timeout_s, self.max_input_chars = max_digits, timeout_s, max_input_chars

    def run(self, code: str) -> ToolResult:
        try:
            value = self.evaluate(code)
        except CalculatorError as error:
            return ToolResult(ok=False, output=f"error: {error}")
        return ToolResult(ok=True, output=format_number(value))

    def evaluate(self, code: str) -> int | float:
        expression = normalize(code)
        if len(expression) > self.max_input_chars:
            raise CalculatorError(
                f"expression is {len(expression)} characters; the limit is {self.max_input_chars}"
            )
        if not expression:
            raise CalculatorError("empty expression")
        try:
            tree = ast.parse(expression, mode="eval")
        except SyntaxError as error:
            raise CalculatorError(f"not an arithmetic expression: {error.msg}") from None
        except (ValueError, RecursionError, MemoryError):
            raise CalculatorError("expression is too large or too deeply nested") from None
        self._deadline = time.monotonic() + self.timeout_s
        try:
            return self._eval(tree.body)
        except RecursionError:
            raise CalculatorError("expression is too deeply nested") from None

    def _eval(self, node: ast.AST) -> int | float:
        if time.monotonic() > self._deadline:
            raise CalculatorError(f"took longer than {self.timeout_s} s")
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):  # bool is an int subclass: refuse True/False too
                raise CalculatorError(f"only int and float numbers are allowed, not {node.value!r}")
            return self._checked(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY_OPERATORS:
            return UNARY_OPERATORS[type(node.op)](self._eval(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPERATORS:
            left, right = self._eval(node.left), self._eval(node.right)
            self._refuse_if_too_large(node.op, left, right)
            try:
                result = BINARY_OPERATORS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            except OverflowError:
                raise CalculatorError("result is too large") from None
            return self._checked(result)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
            raise CalculatorError("^ is not a power here: write 2**10 for 2 to the 10th")
        raise CalculatorError(
            f"{describe(node)} is not allowed: only numbers, + - * / // % ** and parentheses"
        )

    def _refuse_if_too_large(self, op: ast.operator, left: int | float, right: int | float) -> None:
        """Estimate the digits of an integer power or product before computing it."""
        if not (isinstance(left, int) and isinstance(right, int)):
            return  # float arithmetic is bounded by the hardware: it overflows to an error or inf
        if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
            digits = right * math.log10(abs(left))
        elif isinstance(op, ast.Mult):
            digits = count_digits(left) + count_digits(right)
        else:
            return
        if digits > self.max_digits:
            raise CalculatorError(
                f"result would have about {digits:.3g} digits; the limit is {self.max_digits}"
            )

    def _checked(self, value: int | float | complex) -> int | float:
        if isinstance(value, complex):
            raise CalculatorError("result is not a real number")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError("result is too large" if math.isinf(value) else "result is not a number")
        if isinstance(value, int) and count_digits(value) > self.max_digits:
            raise CalculatorError(f"result has more than {self.max_digits} digits")
        return value


def normalize(code: str) -> str:
    expression = code.strip().removesuffix("=").strip()
    expression = expression.replace("×", "*").replace("÷", "/").replace("−", "-")
    return THOUSANDS_SEPARATOR.sub("", expression)


def count_digits(value: int) -> int:
    """Decimal digits of an integer, from its bit length (exact to within one, without printing it)."""
    return max(1, math.ceil(abs(value).bit_length() * math.log10(2)))


def format_number(value: int | float) -> str:
    """Integers exactly; floats with 15 significant digits, hiding binary noise like 0.30000000000000004."""
    return str(value) if isinstance(value, int) else f"{value:.15g}"


def describe(node: ast.AST) -> str:
    """A reader's name for a refused piece of syntax."""
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.BinOp | ast.UnaryOp | ast.BoolOp | ast.Compare):
        op = getattr(node, "op", None) or getattr(node, "ops", [None])[0]
        return f"the operator {type(op).__name__}"
    return {
        ast.Subscript: "indexing",
        ast.Tuple: "a tuple (a comma that is not a thousands separator)",
    }.get(type(node), f"{type(node).__name__} syntax")
