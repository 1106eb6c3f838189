"""`picochat serve` as a user runs it: a subprocess serving a saved checkpoint on 127.0.0.1, answering the
health check and a chat request under its API key, clear errors for bad flags, and --compile / --no-compile
reaching the engine."""

import os
import socket
import subprocess
import sys

import httpx
import pytest
from test_serve_fixtures import tiny_tokenizer, wait_until
from tiny_models import tiny_gpt

from picochat.checkpoint import CheckpointMeta, save_checkpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def picochat(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PICOCHAT_NO_TCMALLOC": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "picochat", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_serve_a_checkpoint(tmp_path):
    tok = tiny_tokenizer()
    run_dir = tmp_path / "checkpoints" / "sft"
    save_checkpoint(run_dir, tiny_gpt(tok.vocab_size), CheckpointMeta(step=5), tokenizer=tok)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = picochat(
        "serve",
        "--checkpoint",
        str(run_dir),
        "--port",
        str(port),
        "--api-key",
        "k",
        "--slots",
        "4",
        "--context",
        "96",
        "--no-compile",  # a compilation pause would only slow the test down
    )

    def healthy() -> bool:
        if server.poll() is not None:
            return True  # it died: stop waiting, the assertion below shows why
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(healthy, timeout_s=60, interval_s=0.2)
        assert server.poll() is None, server.communicate()[1]
        health = httpx.get(url + "/health").json()
        assert health["model"] == "picochat-sft" and health["slots"] == 4 and health["context"] == 96
        body = {"model": "picochat-sft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 401
        reply = httpx.post(
            url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=60
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_bad_flags_are_clear_errors(tmp_path):
    missing = picochat("serve", "--checkpoint", str(tmp_path / "nothing"))
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2 and "no complete checkpoint" in err
    bad_port = picochat("serve", "--port", "70000")
    _, err = bad_port.communicate(timeout=60)
    assert bad_port.returncode == 2 and "--port" in err


@pytest.mark.parametrize("flags, compiles", [([], None), (["--no-compile"], False), (["--compile"], True)])
def test_compile_flag_reaches_the_engine(flags, compiles, tmp_path, monkeypatch):
    """Compiled where it can be by default (None: can_compile), eager with --no-compile; nothing is served."""
    import uvicorn

    import picochat.serve.app
    from picochat.cli import main
    from picochat.runtime import can_compile

    tok = tiny_tokenizer()
    run_dir = tmp_path / "sft"
    save_checkpoint(run_dir, tiny_gpt(tok.vocab_size), CheckpointMeta(step=5), tokenizer=tok)
    schedulers = []
    monkeypatch.setattr(
        picochat.serve.app, "create_app", lambda scheduler, *args, **kw: schedulers.append(scheduler)
    )
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kw: None)
    assert main(["serve", "--checkpoint", str(run_dir), "--slots", "4", *flags]) == 0
    (scheduler,) = schedulers
    engine = scheduler.engine
    expected = can_compile(engine.device) if compiles is None else compiles
    assert engine.compile is expected
    assert all(bank.compiled == (expected and can_compile(engine.device)) for bank in scheduler.slots.banks)
    # a server's weights never change: a compiled step on a CPU has them frozen in
    assert all(
        bank.frozen == (bank.compiled and engine.device.type == "cpu") for bank in scheduler.slots.banks
    )
