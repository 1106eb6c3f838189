"""What a tool returns to the engine."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call.

    `output` is the text the engine forces between <|output_start|> and <|output_end|>: the result on
    success, a short "error: ..." line on failure, so the model sees its mistake and can try again.
    """

    ok: bool
    output: str
