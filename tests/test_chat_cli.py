"""The chat CLI: tool calls shown and kept in the history, commands, multi-turn history, -p, piped stdin."""

import io
import json
import subprocess
import sys

import pytest
import torch
from test_engine import tiny_gpt, tiny_tokenizer

import picochat.decode
from picochat.chat_cli import ChatSession, ScreenText, converse
from picochat.checkpoint import CheckpointMeta, save_checkpoint
from picochat.cli import main
from picochat.engine import Engine, SamplingParams, assistant_message
from picochat.paths import checkpoints_dir
from picochat.runtime import can_compile


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def engine(tok):
    return Engine(tiny_gpt(tok.vocab_size), tok, dtype="fp32")


def on_screen(reply: str) -> str:
    return ScreenText().show(reply)


def test_tool_calls_are_shown_readably_and_kept_as_parts(tok):
    reply = "So<|python_start|>2+3<|python_end|><|output_start|>5<|output_end|> it is 5."
    assert on_screen(reply) == "So [tool: 2+3 → 5] it is 5."
    # the cpu-demo model's own format: no spaces around the call; streamed in pieces, the same screen
    own = "Let me calculate.<|python_start|>12 + 30<|python_end|><|output_start|>42<|output_end|>12 + 30 = 42"
    assert on_screen(own) == "Let me calculate. [tool: 12 + 30 → 42] 12 + 30 = 42"
    screen = ScreenText()
    pieces = ["Let me", " calculate.", "<|python_start|>", "12 + 30", "<|python_end|>", "<|output_start|>",
              "42", "<|output_end|>", "12", " + 30 = 42"]  # fmt: skip
    assert "".join(screen.show(p) for p in pieces) == on_screen(own)
    two = "<|python_start|>1+1<|python_end|><|output_start|>2<|output_end|><|python_start|>2*3<|python_end|>"
    assert on_screen(two + "<|output_start|>6<|output_end|>. Done") == "[tool: 1+1 → 2] [tool: 2*3 → 6]. Done"
    message = assistant_message(reply)
    assert message["content"] == [
        {"type": "text", "text": "So"},
        {"type": "python", "text": "2+3"},
        {"type": "python_output", "text": "5"},
        {"type": "text", "text": " it is 5."},
    ]
    ids, _ = tok.render_conversation([{"role": "user", "content": "2+3?"}, message])
    assert tok.decode(ids).endswith(
        reply + "<|assistant_end|>"
    )  # the history renders back to the same tokens
    assert assistant_message("plain") == {"role": "assistant", "content": "plain"}
    assert assistant_message("  ") is None


def test_session_keeps_history_and_obeys_commands(engine):
    session = ChatSession(engine, SamplingParams(max_tokens=6, temperature=0), system="Be brief.")
    out = io.StringIO()
    session.reply("hello", out)
    session.reply("and then?", out)
    roles = [m["role"] for m in session.messages]
    assert roles[:3] == ["system", "user", "assistant"] and len(roles) in (3, 4, 5)
    converse(session, io.StringIO("/temperature 0.5\n/temperature\n/temperature hot\n/help\n/nope\n"), out)
    assert session.params.temperature == 0.5
    shown = out.getvalue()
    assert (
        "(temperature 0.5)" in shown
        and "needs a number" in shown
        and "/clear" in shown
        and "unknown" in shown
    )
    converse(session, io.StringIO("/clear\n/quit\nnever read\n"), out)
    assert session.messages == [{"role": "system", "content": "Be brief."}]


def test_converse_answers_each_piped_line(engine):
    session = ChatSession(engine, SamplingParams(max_tokens=4, temperature=0))
    out = io.StringIO()
    converse(session, io.StringIO("first\n\nsecond\n"), out)
    assert [m["content"] for m in session.messages if m["role"] == "user"] in (
        ["first", "second"],
        ["second"],
    )


def save_tiny_checkpoint(tok, run: str = "sft"):
    return save_checkpoint(
        checkpoints_dir() / run, tiny_gpt(tok.vocab_size), CheckpointMeta(step=1), tokenizer=tok
    )


def test_prompt_flag_answers_once(tok, capsys):
    save_tiny_checkpoint(tok)
    status = main(
        [
            "chat",
            "-p",
            "What is 2+3?",
            "--max-tokens",
            "5",
            "--temperature",
            "0",
            "--tool",
            "none",
            "--dtype",
            "fp32",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0 and captured.out.endswith("\n") and "loaded" in captured.err


def test_missing_checkpoint_says_what_to_run(capsys):
    assert main(["chat", "-p", "hi"]) == 2
    assert "picochat run" in capsys.readouterr().err


def test_piped_stdin_conversation(tok, isolated_home):
    checkpoint = save_tiny_checkpoint(tok)
    completed = subprocess.run(
        [sys.executable, "-m", "picochat", "chat", "--checkpoint", str(checkpoint), "--max-tokens", "4"],
        input="hello\n/help\nbye\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PICOCHAT_HOME": str(isolated_home), "PICOCHAT_NO_TCMALLOC": "1", "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "/temperature X" in completed.stdout


def test_save_and_load_round_trip_a_conversation(engine, tmp_path):
    session = ChatSession(engine, SamplingParams(max_tokens=6, temperature=0), system="Be brief.")
    out = io.StringIO()
    session.messages += [
        {"role": "user", "content": "2+3?"},
        {
            "role": "assistant",
            "content": [{"type": "python", "text": "2+3"}, {"type": "python_output", "text": "5"}],
        },
    ]
    converse(session, io.StringIO(f"/save {tmp_path / 'chat.json'}\n"), out)
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved == {"messages": session.messages}

    other = ChatSession(engine, SamplingParams(max_tokens=6, temperature=0))
    converse(other, io.StringIO(f"/load {tmp_path / 'chat.json'}\n/clear\n"), out)
    assert other.system == "Be brief." and other.messages == [{"role": "system", "content": "Be brief."}]
    converse(other, io.StringIO(f"/load {tmp_path / 'chat.json'}\n"), out)
    assert other.messages == session.messages
    other.reply("and 4+4?", out)  # the loaded conversation continues
    assert other.messages[3] == {"role": "user", "content": "and 4+4?"}
    assert "(saved 3 messages" in out.getvalue() and "(loaded 3 messages" in out.getvalue()


@pytest.mark.parametrize(
    "content, error",
    [
        ("not json", "not JSON"),
        ('{"turns": []}', "no conversation"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "robot"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "unanswered"),
    ],
)
def test_a_bad_file_is_an_error_and_the_conversation_stays(engine, tmp_path, content, error):
    session = ChatSession(engine, SamplingParams(max_tokens=4, temperature=0), system="S")
    before = list(session.messages)
    (tmp_path / "bad.json").write_text(content)
    out = io.StringIO()
    converse(
        session, io.StringIO(f"/load {tmp_path / 'bad.json'}\n/load {tmp_path / 'none.json'}\n/save\n"), out
    )
    shown = out.getvalue()
    assert error in shown and "cannot read" in shown and "needs a file name" in shown
    assert session.messages == before and session.system == "S"


def test_sampling_flags_reach_the_engine(tok, monkeypatch, capsys):
    import picochat.chat_cli as chat_cli
    import picochat.checkpoint as checkpoint

    seen = {}
    monkeypatch.setattr(checkpoint, "load_engine", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        chat_cli, "chat", lambda engine, params, **kw: seen.setdefault("params", params) and 0
    )
    argv = ["chat", "-p", "hi", "--top-p", "0.9", "--min-p", "0.05", "--stop", "User:", "--stop", "\n\n"]
    assert main([*argv, "--max-tokens", "7", "--seed", "3", "--temperature", "0.7", "--top-k", "5"]) == 0
    assert seen["params"] == SamplingParams(
        max_tokens=7, temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, seed=3, stop=("User:", "\n\n")
    )
    assert main(["chat", "-p", "hi", "--top-p", "1.5"]) == 2
    assert "--top-p 1.5: expected a finite number > 0 and ≤ 1" in capsys.readouterr().err


def test_a_seed_makes_sampled_replies_repeat(tok, capsys):
    save_tiny_checkpoint(tok)
    args = [
        "chat",
        "-p",
        "hi",
        "--max-tokens",
        "8",
        "--temperature",
        "1",
        "--tool",
        "none",
        "--dtype",
        "fp32",
    ]
    replies = []
    for seed in ("5", "5"):
        assert main([*args, "--seed", seed, "--top-p", "0.95", "--min-p", "0.01"]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1]


def test_line_history_is_kept_under_picochat_home(isolated_home):
    readline = pytest.importorskip("readline")
    from picochat.chat_cli import LineHistory, history_file

    assert history_file() == isolated_home / "chat_history"
    readline.clear_history()
    history = LineHistory(history_file())
    readline.add_history("What is 2+3?")
    history.close()
    assert "What is 2+3?" in history_file().read_text()
    readline.clear_history()
    LineHistory(history_file())
    assert readline.get_history_item(readline.get_current_history_length()) == "What is 2+3?"
    readline.clear_history()


def test_without_a_tool_a_call_the_model_writes_is_not_shown():
    reply = "So<|python_start|>2+3<|python_end|> it is 5."
    assert ScreenText(tools=False).show(reply) == "So it is 5."
    screen = ScreenText(tools=False)
    assert (
        "".join(screen.show(p) for p in ["So", "<|python_start|>", "2+", "3", "<|python_end|>", " it is 5."])
        == "So it is 5."
    )


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(torch.device("cpu")), reason="torch.compile needs a C compiler")
def test_the_compiled_step_warmed_in_the_background_takes_over_between_replies(tok, monkeypatch):
    """Eager replies at once; once warm, the compiled step writes the same greedy tokens, compiling nothing
    more inside a reply. (Dynamo alone stands in for inductor: it traces and counts graphs the same way.)"""
    eager_only = lambda fn, device, frozen=False: torch.compile(fn, fullgraph=True, backend="eager")  # noqa: E731
    monkeypatch.setattr(picochat.decode, "compile_step", eager_only)
    engine = Engine(tiny_gpt(tok.vocab_size), tok, dtype="fp32")
    expected = Engine(engine.model, tok, dtype="fp32")
    params = SamplingParams(max_tokens=40, temperature=0)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    warming = picochat.decode.WarmSlots(engine.model, engine.dtype)
    session = ChatSession(engine, params, warming=warming)
    replies = [session.reply("What is 2+3?", io.StringIO())]  # eager, whether or not the warm-up is done
    slots = warming.wait(120)
    assert slots is not None and slots.compiled, warming.error
    warmed = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert warmed > graphs
    replies.append(session.reply("And 12*7?", io.StringIO()))
    assert engine.compile and engine._slots is slots  # the warm step took over
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == warmed  # nothing compiled in a reply
    history = []
    for question, reply in zip(("What is 2+3?", "And 12*7?"), replies):
        history.append({"role": "user", "content": question})
        assert reply == expected.chat(history, params)  # the eager engine's words, turn by turn
        history.append(assistant_message(reply))
