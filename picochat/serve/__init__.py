"""Serving: an OpenAI-compatible HTTP server with continuous batching, and a chat page.

    picochat serve                                   # the newest SFT model on http://127.0.0.1:8000
    picochat serve --checkpoint DIR --port 8080 --api-key KEY

`app.py`: the HTTP endpoints (`schema.py`: the wire format); `scheduler.py`: one thread decodes all running
requests together (continuous batching); `static/index.html`: the chat page at `/`. Design: docs/serve.md.
"""

from __future__ import annotations

import sys
from pathlib import Path


def model_name_for(checkpoint: Path) -> str:
    """The id clients send as `model`: picochat-<run>, e.g. picochat-sft for .../sft/step_000133."""
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
    max_body: int = 2**20,
    cors_origin: tuple[str, ...] = (),
) -> None:
    """Load the model and serve it until interrupted; `compile` None compiles the decode step where it can."""
    import logging

    import uvicorn

    from picochat.checkpoint import default_checkpoint, load_engine
    from picochat.decode import auto_compile
    from picochat.serve.app import create_app
    from picochat.serve.scheduler import Scheduler
    from picochat.tools.sandbox import get_tool

    path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint()
    engine = load_engine(path, get_tool(tool), dtype, compile=False)  # the scheduler builds its own slots
    engine.compile = auto_compile(compile, engine.device)
    engine.freeze = engine.compile  # a server never changes the weights: a CPU compiles them into the step
    scheduler = Scheduler(engine, num_slots=slots, context=context, max_queue=max_queue)
    name, decoding = model_name_for(path), "compiled" if engine.compile else "eager"
    app = create_app(scheduler, name, api_key=api_key, max_body=max_body, cors_origins=cors_origin)
    access = logging.getLogger("picochat.serve.access")  # one line per request on the console
    access.addHandler(logging.StreamHandler(sys.stdout))
    access.setLevel(logging.INFO)
    context = f"context {scheduler.context} tokens"
    print(
        f"serving {name} on http://{host}:{port}/ ({slots} slots, {context}, {decoding} decoding)", flush=True
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
