"""Hugging Face interop: export -> transformers gives picochat's logits, chat ids and greedy tokens;
export -> import gives back the same weights; bad folders give one clear error each."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from picochat import hf  # noqa: E402
from picochat.checkpoint import CheckpointMeta, load_model, save_checkpoint  # noqa: E402
from picochat.engine import Engine, SamplingParams  # noqa: E402
from picochat.errors import UserError  # noqa: E402
from picochat.model import GPT, GPTConfig  # noqa: E402
from picochat.tokenizer import Tokenizer  # noqa: E402
from picochat.tokenizer.chat import render_conversation, render_for_completion  # noqa: E402

TEXT = (
    "The quick brown fox jumps over the lazy dog. 12*7 = 84, and 3+4 = 7.\n"
    "def square(x):\n    return x * x  # numbers 0123456789\n"
    "Grüße aus Köln! naïve café, 東京, emoji 🙂.\tTabs and   spaces.\r\n"
)
WORDS = [*TEXT.split(), "  ", "\n", "\n\n", " x", "print(2 + 2)", "ü", "🙂", "  indented", "\t"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([TEXT * 8], vocab_size=320)


def random_gpt(tokenizer: Tokenizer, n_kv_head: int = 4, seed: int = 0) -> GPT:
    """A tiny GPT whose every matrix is random (the default init zeroes o_proj and fc2)."""
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, seq_len=64, n_layer=2, n_head=4, n_kv_head=n_kv_head, n_embd=32
    )
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_tokens" not in name:
                p.normal_(0.0, 1.0 / p.size(1) ** 0.5)
    return model.eval()


def make_checkpoint(
    root: Path, tokenizer: Tokenizer, n_kv_head: int = 4, meta: CheckpointMeta | None = None
) -> Path:
    model = random_gpt(tokenizer, n_kv_head)
    meta = meta or CheckpointMeta(
        step=7,
        last_eval={"step": 7, "bpb": 1.234, "loss": 2.5},
        config={"matrix_lr": 0.02, "schedule": "wsd", "run_dir": "/home/someone/.cache/picochat/base"},
    )
    return save_checkpoint(root / "base", model, meta, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    """(checkpoint path, exported folder) for a GQA model (4 query heads sharing 2 key/value heads)."""
    root = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(root, tokenizer, n_kv_head=2)
    return ckpt, hf.export_checkpoint(ckpt, root / "hf")


# ---- export --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_kv_head", [4, 2], ids=["mha", "gqa"])
def test_transformers_logits_equal_picochat(tmp_path, tokenizer, n_kv_head):
    from transformers import AutoModelForCausalLM

    ckpt = make_checkpoint(tmp_path, tokenizer, n_kv_head)
    out = hf.export_checkpoint(ckpt, tmp_path / "hf")
    ours, _, _ = load_model(ckpt)
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(theirs).__name__ == "NanoChatForCausalLM"
    assert theirs.config.num_key_value_heads == n_kv_head
    # 100 positions: past the training context (64), inside the RoPE table both models use
    ids = torch.randint(0, tokenizer.vocab_size, (3, 100), generator=torch.Generator().manual_seed(n_kv_head))
    with torch.no_grad():
        expected = ours(ids)
        got = theirs(ids).logits.float()
    assert expected.abs().max() > 1.0  # the logits are not trivially near zero
    assert (expected - got).abs().max().item() <= 1e-4


def test_folder_has_the_files_and_schema(exported, tokenizer):
    _, out = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "nanochat" and config["architectures"] == ["NanoChatForCausalLM"]
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["bos_token"] == "<|bos|>" and tok_config["eos_token"] == "<|assistant_end|>"
    assert tok_config["pad_token"] and tok_config["chat_template"] == hf.CHAT_TEMPLATE
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"][0] == tokenizer.special_id("<|assistant_end|>")
    card = (out / "README.md").read_text()
    assert "bpb | 1.234" in card and "| layers | 2 |" in card
    assert '"matrix_lr": 0.02' in card and "someone" not in card


def test_tokenizer_loads_with_auto_tokenizer_and_encodes_like_picochat(exported, tokenizer):
    from transformers import AutoTokenizer

    _, out = exported
    theirs = AutoTokenizer.from_pretrained(out)
    assert theirs.eos_token_id == tokenizer.special_id("<|assistant_end|>")
    assert theirs.bos_token_id == tokenizer.bos_id
    assert theirs(TEXT)["input_ids"] == tokenizer.encode(TEXT, prepend=tokenizer.bos_id)
    assert theirs.decode(tokenizer.encode(TEXT)) == TEXT


def test_a_tool_call_decodes_apart_from_its_output_and_the_reply(exported, tokenizer):
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(exported[1])
    ids = render_conversation(tokenizer, hf.SAMPLE_CONVERSATION)[0]
    for skip in (True, False):
        text = theirs.decode(ids, skip_special_tokens=skip)
        assert "Let me compute. [tool: 12*7 → 84] It is 84." in text
        assert ("<|user_start|>" in text) != skip  # the turns' markers are still special


def random_text(rng: random.Random) -> str:
    text = "".join(rng.choice([" ", "", "\n"]) + rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
    return text if text.strip() else text + "ok"


def random_code(rng: random.Random) -> str:
    return rng.choice(["2+3", "12*7", "print(1)", "x = 4\nprint(x * x)", " len('abc') "]) + rng.choice(
        ["", "\n"]
    )


def random_call(rng: random.Random, number: int) -> dict:
    code = random_code(rng)
    arguments = rng.choice([{"code": code}, {"expression": code}, code])
    call = {
        "type": "function",
        "function": {"name": rng.choice(["python", "calculator"]), "arguments": arguments},
    }
    if rng.random() < 0.7:
        call["id"] = f"call_{number}"
    return call


def random_assistant(rng: random.Random) -> list[dict]:
    """An assistant reply: one message, or messages with tool calls answered by tool messages."""
    messages = []
    for _ in range(rng.randint(1, 3)):
        shape = rng.choice(["string", "parts", "calls"])
        if shape == "string":
            messages.append({"role": "assistant", "content": random_text(rng)})
            break
        if shape == "parts":  # no two text parts in a row: picochat encodes them apart, a template cannot
            kinds = rng.sample(["text", "python", "python_output"], rng.randint(1, 3))
            parts = [
                {"type": kind, "text": random_code(rng) if kind == "python" else random_text(rng)}
                for kind in kinds
            ]
            messages.append({"role": "assistant", "content": parts})
            break
        calls = [random_call(rng, n) for n in range(rng.randint(1, 3))]
        content = rng.choice([None, "", random_text(rng)])
        messages.append({"role": "assistant", "content": content, "tool_calls": calls})
        answered = rng.sample(calls, rng.randint(0, len(calls)))
        if not all("id" in call for call in answered):  # without ids, outputs answer calls in order
            answered = calls[: len(answered)]
        for call in answered:
            tool = {"role": "tool", "content": rng.choice(["84", "", "error: boom", random_text(rng)])}
            if "id" in call:
                tool["tool_call_id"] = call["id"]
            messages.append(tool)
        if not answered:
            break
    return messages


def random_conversation(rng: random.Random) -> list[dict]:
    messages = []
    if rng.random() < 0.5:
        content = random_text(rng)
        if rng.random() < 0.3:
            content = [{"type": "text", "text": content}, {"type": "text", "text": random_text(rng)}]
        messages.append({"role": "system", "content": content})
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": random_text(rng)})
        messages += random_assistant(rng)
    if rng.random() < 0.3:
        messages.append({"role": "user", "content": random_text(rng)})
    return messages


def test_chat_template_ids_equal_render_conversation(exported, tokenizer):
    from transformers import AutoTokenizer

    _, out = exported
    theirs = AutoTokenizer.from_pretrained(out)
    rng = random.Random(0)
    kinds = set()
    for _ in range(200):
        messages = random_conversation(rng)
        kinds |= {m["role"] for m in messages} | {"tool_calls" for m in messages if m.get("tool_calls")}
        expected, _ = render_conversation(tokenizer, messages)
        assert hf.chat_template_ids(theirs, messages) == expected, messages
        if messages[-1]["role"] == "user":
            prompt = hf.chat_template_ids(theirs, messages, add_generation_prompt=True)
            assert prompt == render_for_completion(tokenizer, messages)
    assert kinds == {"system", "user", "assistant", "tool", "tool_calls"}


def test_chat_template_ids_equal_render_conversation_on_arbitrary_text(exported, tokenizer):
    """Any Unicode in the messages (but special-token text, see docs/hf.md) encodes alike."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(exported[1])
    text = st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and "<|" not in t)

    @settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.none(), text), st.lists(st.tuples(text, text), min_size=1, max_size=3))
    def check(system, turns):
        messages = [{"role": "system", "content": system}] if system else []
        for user, assistant in turns:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        assert hf.chat_template_ids(theirs, messages) == render_conversation(tokenizer, messages)[0]

    check()


def test_chat_template_refuses_json_string_arguments(exported):
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(exported[1])
    call = {"function": {"name": "python", "arguments": '{"code": "1"}'}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    with pytest.raises(Exception, match="dict"):
        hf.chat_template_ids(theirs, messages)


def test_greedy_generate_equals_engine(exported, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt, out = exported
    ours, _, _ = load_model(ckpt)
    engine = Engine(ours, tokenizer, tool=None, dtype="fp32")
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(out)
    finish_reasons = set()
    for content in ["What is 12*7?", "Tell me about the lazy dog.", "Grüße!"]:
        messages = [{"role": "user", "content": content}]
        prompt = render_for_completion(tokenizer, messages)
        [result] = engine.generate([prompt], SamplingParams(max_tokens=24, temperature=0))
        ids = torch.tensor([hf.chat_template_ids(hf_tokenizer, messages, add_generation_prompt=True)])
        assert ids[0].tolist() == prompt
        with torch.no_grad():
            generated = theirs.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24
            )
        assert generated[0, len(prompt) :].tolist() == result.tokens
        finish_reasons.add(result.finish_reason)
    assert finish_reasons == {"stop", "length"}  # both ways of ending agree (<|assistant_end|>, max tokens)


def test_model_card_snippet_runs(exported):
    _, out = exported
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]
    namespace = {"PATH": str(out), "print": lambda *args: None}
    exec(snippet, namespace)
    assert namespace["out"].shape[1] > namespace["ids"]["input_ids"].shape[1]


def test_bf16_export_loads_with_bf16_weights(tmp_path, tokenizer):
    from safetensors import safe_open

    ckpt = make_checkpoint(tmp_path, tokenizer)
    out = hf.export_checkpoint(ckpt, tmp_path / "hf", dtype="bf16")
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_model_card_includes_eval_reports(tmp_path, tokenizer, isolated_home):
    report = {
        "suite": "base", "stage": "base", "checkpoint": "x", "step": 7, "created": "2026-01-01T00:00:00",
        "seconds": 1.0, "core": 0.0123, "core_tasks": 1, "core_missing": ["boolq"],
        "tasks": {"arc_easy": {"accuracy": 0.27, "stderr": 0.02, "n": 500, "chance": 0.25, "centered": 0.027,
                               "scoring": "multiple choice", "rule": "acc", "shots": 10, "mean_shots_used": 3.5}},
    }  # fmt: skip
    (isolated_home / "reports").mkdir(parents=True)
    (isolated_home / "reports" / "eval_base_base.json").write_text(json.dumps(report))
    (isolated_home / "reports" / "eval_chat_sft.json").write_text(json.dumps({**report, "suite": "chat"}))
    out = hf.export_checkpoint(
        make_checkpoint(tmp_path, tokenizer, meta=CheckpointMeta(step=7)), tmp_path / "hf"
    )
    card = (out / "README.md").read_text()
    assert "| arc_easy | multiple choice | acc | 10 | 3.5 | 0.27 | 0.02 | 500 | 0.25 | 0.027 |" in card
    assert "CORE 0.0123 over 1 of CORE's 2 tasks (not run: boolq)" in card
    assert "**base** (pretrained) language model" in card and "do_sample=False" in card
    assert "chat suite" not in card  # another stage's report


def test_model_card_shows_the_settings_the_trainer_recorded(tmp_path):
    """A checkpoint written by a real (two-step) pretraining: the card lists its settings, not local paths."""
    from picochat.data.corpus import write_synthetic_corpus
    from picochat.data.shards import iter_documents
    from picochat.pretrain import preset_config, pretrain

    corpus = write_synthetic_corpus(tmp_path / "corpus", n_docs=40, seed=3)
    documents = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    tokenizer = Tokenizer.train(documents, vocab_size=300).save(tmp_path / "tokenizer")
    run = tmp_path / "base"
    tiny = dict(depth=1, seq_len=32, device_batch=2, batch_tokens=64, steps=2, warmup_steps=1, eval_batches=1)
    pretrain(
        preset_config("cpu-tiny", corpus=corpus, tokenizer=tokenizer, run_dir=run, matrix_lr=0.0123, **tiny)
    )
    card = (hf.export_checkpoint(run, tmp_path / "hf") / "README.md").read_text()
    assert '"matrix_lr": 0.0123' in card and '"depth": 1' in card and '"steps": 2' in card
    assert "| tokens seen | 128 |" in card and "| steps | 2 of 2 |" in card  # 2 steps × 64 tokens
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["max_position_embeddings"] == 32  # the training context, not the RoPE table
    assert str(tmp_path) not in card  # the run directory, corpus and tokenizer paths are left out


def test_export_checks_the_template_before_the_folder_appears(tmp_path, tokenizer, monkeypatch):
    ckpt = make_checkpoint(tmp_path, tokenizer)
    monkeypatch.setattr(
        hf, "CHAT_TEMPLATE", hf.CHAT_TEMPLATE.replace("'<|assistant_end|>'", "' <|assistant_end|>'")
    )
    with pytest.raises(UserError, match="does not render like picochat"):
        hf.export_checkpoint(ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and list(tmp_path.iterdir()) == [tmp_path / "base"]


def test_export_refuses_a_non_empty_directory(tmp_path, tokenizer):
    ckpt = make_checkpoint(tmp_path, tokenizer)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        hf.export_checkpoint(ckpt, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"


# ---- import --------------------------------------------------------------------------------------------


def test_export_then_import_gives_identical_state_dict(exported, tmp_path):
    ckpt, out = exported
    imported = hf.import_folder(out, tmp_path / "imported")
    original, tok_a, meta_a = load_model(ckpt)
    model, tok_b, meta_b = load_model(imported)
    a, b = original.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model.config == original.config and meta_b.step == meta_a.step
    assert tok_b.ranks == tok_a.ranks and tok_b.pattern == tok_a.pattern


def test_import_of_a_foreign_folder(exported, tmp_path):
    """A folder written by transformers itself: no picochat header, a legacy `rope_theta`, a tied head,
    weights in shards. Imported, it gives transformers' logits."""
    from transformers import AutoConfig, NanoChatForCausalLM

    _, out = exported
    raw = json.loads((out / "config.json").read_text())
    del raw["rope_parameters"]
    raw.update(rope_theta=5000.0, tie_word_embeddings=True)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(json.dumps(raw))
    torch.manual_seed(1)
    theirs = NanoChatForCausalLM(AutoConfig.from_pretrained(tmp_path / "config")).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0.0, 1.0 / p.size(1) ** 0.5)  # every matrix random (transformers' init is small)
    assert theirs.lm_head.weight is theirs.model.embed_tokens.weight
    foreign = tmp_path / "foreign"
    theirs.save_pretrained(foreign, max_shard_size="50KB")
    assert (foreign / "model.safetensors.index.json").is_file()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (foreign / name).write_bytes((out / name).read_bytes())
    ours, tokenizer, meta = load_model(hf.import_folder(foreign, tmp_path / "run"))
    assert ours.config.rope_base == 5000.0 and meta.step == 0
    assert ours.config.seq_len == raw["max_position_embeddings"]  # the context the folder states
    assert torch.equal(ours.lm_head.weight, ours.embed_tokens.weight)
    ids = torch.randint(0, tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids) - theirs(ids).logits).abs().max() <= 1e-4


def copy_folder(out: Path, target: Path) -> Path:
    target.mkdir()
    for path in out.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32})),
            "model_type is 'llama'",
        ),
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-1000]),
            "truncated",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "hidden_act": "gelu"})
            ),
            "hidden_act = 'gelu'",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "attention_bias": True})
            ),
            "attention_bias",
        ),
    ],
    ids=["no-config", "no-tokenizer", "no-weights", "llama", "truncated", "gelu", "bias"],
)
def test_bad_folders_give_one_clear_error(exported, tmp_path, damage, message):
    folder = copy_folder(exported[1], tmp_path / "bad")
    damage(folder)
    with pytest.raises(UserError, match=message):
        hf.import_folder(folder, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_import_refuses_a_tokenizer_without_picochat_special_tokens(exported, tmp_path):
    folder = copy_folder(exported[1], tmp_path / "bad")
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|system_start|>"]
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="<|system_start|>"):
        hf.import_folder(folder, tmp_path / "run")


def test_old_tokenizer_directories_still_load(tmp_path, tokenizer):
    from picochat.tokenizer import storage

    directory = tokenizer.save(tmp_path / "tok")
    (directory / storage.CONFIG_FILE).rename(directory / storage.LEGACY_CONFIG_FILE)
    assert Tokenizer.load(directory).encode(TEXT) == tokenizer.encode(TEXT)


# ---- hub and CLI ---------------------------------------------------------------------------------------


def test_push_to_hub_uploads_the_exported_folder(exported, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, **kwargs):
            calls.append(("create_repo", kwargs))
            return f"https://hub.example/{kwargs['repo_id']}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs, sorted(os.listdir(kwargs["folder_path"]))))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = hf.push_to_hub(exported[1], "me/picochat-tiny", private=True)
    assert url == "https://hub.example/me/picochat-tiny"
    (_, create), (_, upload, files) = calls
    assert create["repo_id"] == "me/picochat-tiny" and create["private"] and create["exist_ok"]
    assert upload["repo_id"] == "me/picochat-tiny" and Path(upload["folder_path"]) == exported[1]
    assert "model.safetensors" in files and "tokenizer_config.json" in files


class FakeHub(BaseHTTPRequestHandler):
    """The few Hub API routes an upload uses; it keeps the requests and the files committed."""

    requests: list[tuple[str, str, str | None]] = []
    files: dict[str, bytes] = {}

    def do_GET(self):
        self.requests.append(("GET", self.path, self.headers.get("Authorization")))
        self.reply(404, {"error": "not here"})  # registries huggingface_hub may fetch on the side

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(("POST", self.path, self.headers.get("Authorization")))
        endpoint = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            return self.reply(200, {"url": f"{endpoint}/{request['organization']}/{request['name']}"})
        if self.path == "/api/validate-yaml":
            return self.reply(200, {"errors": [], "warnings": []})
        repo = "/".join(self.path.split("/")[3:5])  # /api/models/<namespace>/<name>/...
        if "/preupload/" in self.path:
            paths = [f["path"] for f in json.loads(body)["files"]]
            files = [{"path": p, "uploadMode": "regular", "shouldIgnore": False} for p in paths]
            return self.reply(200, {"files": files})
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            oid = "0" * 40
            return self.reply(200, {"commitUrl": f"{endpoint}/{repo}/commit/{oid}", "commitOid": oid})
        self.reply(404, {"error": "not here"})

    def reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    FakeHub.requests, FakeHub.files = [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_cli_export_pushes_through_hf_endpoint_with_hf_token(exported, tmp_path, fake_hub):
    """`python -m picochat export ... --push-to-hub`: the upload goes to HF_ENDPOINT with HF_TOKEN."""
    ckpt, _ = exported
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_ENDPOINT": fake_hub,
        "HF_TOKEN": "hf_test_token",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "picochat", "export", ckpt.parent, out, "--dtype", "bf16"]
    done = subprocess.run(
        [*map(str, command), "--push-to-hub", "me/tiny"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    posts = [(path, auth) for method, path, auth in FakeHub.requests if method == "POST"]
    assert ("/api/repos/create", "Bearer hf_test_token") in posts
    assert ("/api/models/me/tiny/commit/main", "Bearer hf_test_token") in posts
    assert FakeHub.files == {path.name: path.read_bytes() for path in out.iterdir()}


def test_cli_import_and_errors(exported, tmp_path, capsys):
    from picochat.cli import main

    ckpt, out = exported
    assert main(["import", str(out), "--out", str(tmp_path / "run")]) == 0
    model, _, meta = load_model(tmp_path / "run")
    assert meta.step == 7 and model.lm_head.weight.dtype == torch.float32
    assert main(["import", str(out), "--out", str(tmp_path / "run")]) == 2  # holds a checkpoint already
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import", str(out), "--out", str(tmp_path / "run"), "--overwrite"]) == 0
    assert main(["import", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["export", str(ckpt), str(out)]) == 2  # not empty
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_missing_transformers_names_the_extra(exported, tmp_path, monkeypatch, capsys):
    from picochat.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    assert main(["export", str(exported[0]), str(tmp_path / "out")]) == 2
    assert "pip install 'picochat[hf]'" in capsys.readouterr().err
    assert main(["import", str(exported[1]), "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'picochat[hf]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
