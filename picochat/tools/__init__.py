"""Tools the chat model can call: it writes <|python_start|>code<|python_end|>, the engine runs the code
through one of these and forces <|output_start|>result<|output_end|> back into the stream (docs/tools.md).

- `Calculator` (the default): arithmetic only, parsed with `ast`, no names, bounded size and time.
- `PythonSandbox`: real Python in a locked-down subprocess; where the machine cannot give it walls (Linux
  namespaces) it refuses to start unless `unsafe=True`.
"""

from picochat.errors import UserError
from picochat.tools.calculator import Calculator, ToolResult
from picochat.tools.sandbox import PythonSandbox

__all__ = ["Calculator", "PythonSandbox", "ToolResult", "get_tool"]

TOOL_NAMES = ("calculator", "python")


def get_tool(name, unsafe: bool = False) -> Calculator | PythonSandbox:
    """The tool called `name` with default limits (a tool object is returned as it is); both have
    .run(code) -> ToolResult. `unsafe=True` lets the Python sandbox run where it cannot build its walls."""
    if isinstance(name, (Calculator, PythonSandbox)):
        return name
    if name == "calculator":
        return Calculator()
    if name == "python":
        return PythonSandbox(unsafe=unsafe)
    raise UserError(f"unknown tool {name!r}: choose one of {', '.join(TOOL_NAMES)}")
