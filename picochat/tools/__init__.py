"""Tools the chat model can call: it writes <|python_start|>code<|python_end|>, the engine runs the code
through one of these and forces <|output_start|>result<|output_end|> back into the stream (docs/tools.md).

`Calculator` (the default) does arithmetic only; `PythonSandbox` (`picochat.tools.sandbox`, which the
engine never imports) runs real Python in a locked-down subprocess, and without walls only if `unsafe=True`.
"""

from picochat.tools.calculator import Calculator, ToolResult

__all__ = ["TOOL_NAMES", "Calculator", "ToolResult"]

TOOL_NAMES = ("calculator", "python")
