"""Shared pieces of the serving tests (no tests here): a tiny tokenizer and GPT, a scripted model whose
replies a test knows in advance, and a live server on 127.0.0.1 with a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn

from picochat.engine import Engine
from picochat.serve.app import create_app
from picochat.serve.scheduler import Scheduler
from picochat.tokenizer import Tokenizer

MODEL = "picochat-test"
TEXT = """
A server answers many people at once. Each request waits in a queue, then joins the batch, and every step
of the model writes one more token for everyone. What is 2+3? It is 5. What is 12*7? It is 84.
Café, naïve, 北京 and 🙂 take several bytes in UTF-8; the stream never splits a character.
"""


def tiny_tokenizer() -> Tokenizer:
    return Tokenizer.train([TEXT * 4], vocab_size=300)


def make_scheduler(
    model, tok, slots: int = 8, context: int = 128, max_queue: int = 64, bank_size: int = 32
) -> Scheduler:
    engine = Engine(model, tok, tool="calculator", dtype="fp32")
    return Scheduler(engine, num_slots=slots, context=context, max_queue=max_queue, bank_size=bank_size)


@contextlib.contextmanager
def live_server(scheduler: Scheduler, api_key: str | None = None, timeout_s: float = 20.0, **options):
    """Serve `scheduler` on 127.0.0.1 at a free port in a thread; yield the base URL once its decode step is
    warm (`create_app` options too); stop it after."""
    app = create_app(scheduler, MODEL, api_key=api_key, **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    if not app.state.ready.wait(timeout_s):
        raise RuntimeError("the test server did not warm up")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()


def wait_until(condition, timeout_s: float = 20.0, interval_s: float = 0.05) -> bool:
    """Poll `condition` until it is true or `timeout_s` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())
