"""`picochat chat`: chat with a trained model in the terminal (-p "What is 12*7?": answer once, exit)."""

from dataclasses import fields

from picochat.settings import ChatOptions, add_command

HELP = "Chat with a trained model in the terminal."


def add_parser(subparsers) -> None:
    add_command(subparsers, "chat", run, ChatOptions, HELP)


def run(options: ChatOptions, args) -> int:
    from picochat.chat_cli import chat
    from picochat.checkpoint import load_engine
    from picochat.engine import SamplingParams
    from picochat.runtime import can_compile
    from picochat.tools.sandbox import get_tool

    params = SamplingParams(**{f.name: getattr(options, f.name) for f in fields(SamplingParams)})
    tool = get_tool(options.tool, unsafe=options.unsafe_python)  # the sandbox refuses here, before loading
    background = options.compile is None  # eager at once; the compiled step takes over once warm
    engine = load_engine(options.checkpoint, tool, options.dtype, compile=options.compile or False)
    if options.textbook:  # the plain equations instead of the fused kernels (docs/math.md)
        engine.model.textbook = True
    warm = background and options.prompt is None and not options.textbook and can_compile(engine.device)
    return chat(engine, params, prompt=options.prompt, system=options.system, warm=warm)
