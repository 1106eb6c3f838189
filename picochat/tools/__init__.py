"""Tools the chat model can call: it writes <|python_start|>code<|python_end|>, the engine runs the code
through one of these and forces <|output_start|>result<|output_end|> back into the stream (docs/tools.md).

- `Calculator` (the default): arithmetic only, parsed with `ast`, no names, bounded size and time.
- `PythonSandbox` (`picochat.tools.sandbox`): real Python in a locked-down subprocess; where the machine
  cannot give it walls (Linux namespaces) it refuses to start unless `unsafe=True`. It is a room of its own:
  the engine never imports it, the commands build it (`get_tool`) and hand it over.
"""

from picochat.tools.calculator import Calculator, ToolResult

__all__ = ["TOOL_NAMES", "Calculator", "ToolResult"]

TOOL_NAMES = ("calculator", "python")
