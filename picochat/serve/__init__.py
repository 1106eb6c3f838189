"""Serving: an OpenAI-compatible HTTP server with continuous batching, and a chat page.

    picochat serve                                   # the newest SFT model on http://127.0.0.1:8000
    picochat serve --checkpoint DIR --port 8080 --api-key KEY

- `app.py`: the HTTP endpoints and OpenAI's error shape (`schema.py`: the wire format as pydantic models).
- `scheduler.py`: one thread owns the model and decodes all running requests together (continuous batching)
  in banks of decode slots.
- `static/index.html`: the chat page served at `/`.
docs/serve.md has the design.
"""

from __future__ import annotations

from pathlib import Path


def model_name_for(checkpoint: Path) -> str:
    """The id clients send as `model`: picochat-<run>, e.g. picochat-sft for .../checkpoints/sft/step_000133."""
    path = Path(checkpoint).resolve()
    run = path.parent.name if path.name.startswith("step_") else path.name
    return f"picochat-{run}" if run else "picochat"


def serve(
    checkpoint: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    slots: int = 32,
    context: int | None = None,
    max_queue: int = 64,
    tool: str | None = "calculator",
    dtype: str | None = None,
    compile: bool | None = None,
) -> None:
    """Load the model and serve it until interrupted; `compile` None compiles the decode step where it can."""
    import uvicorn

    from picochat.checkpoint import default_checkpoint, load_engine
    from picochat.decode import auto_compile
    from picochat.serve.app import create_app
    from picochat.serve.scheduler import Scheduler
    from picochat.tools.sandbox import get_tool

    path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint()
    engine = load_engine(path, get_tool(tool), dtype, compile=False)  # the scheduler builds its own slots from .compile
    engine.compile = auto_compile(compile, engine.device)
    engine.freeze = engine.compile  # a server never changes the weights: a CPU compiles them into the step
    scheduler = Scheduler(engine, num_slots=slots, context=context, max_queue=max_queue)
    name = model_name_for(path)
    app = create_app(scheduler, name, api_key=api_key)
    decoding = "compiled" if engine.compile else "eager"
    context = f"context {scheduler.context} tokens"
    print(f"serving {name} on http://{host}:{port}/ ({slots} slots, {context}, {decoding} decoding)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
