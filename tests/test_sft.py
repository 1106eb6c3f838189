"""SFT: tasks give correct conversations, the loader learns only the assistant's tokens and resumes exactly."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from test_engine import tiny_gpt

from picochat.checkpoint import CheckpointMeta, latest_checkpoint, save_checkpoint
from picochat.errors import UserError
from picochat.settings import SFTConfig, resolve
from picochat.sft import SFTLoader, sft
from picochat.tasks import parse_mixture
from picochat.tasks.arithmetic import ArithmeticTask
from picochat.tasks.common import JsonlTask
from picochat.tasks.identity import GREETINGS, IdentityTask
from picochat.tasks.spelling import (
    SpellingTask,
    draw_phrasing,
    draw_word,
    plain_and_dressed,
    spell_templates,
    spelling_words,
)
from picochat.tokenizer import Tokenizer
from picochat.tools import Calculator

TEXT = " ".join(
    ["picochat is a small chat model. It can spell words like garden and count letters in strawberry."] * 20
    + ["What is 12 + 30? The answer is 42. Calculate 7 * 6 = 42."] * 20
)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train([TEXT], vocab_size=350)


def test_arithmetic_conversations_use_the_calculator_and_are_right():
    task, calc = ArithmeticTask(), Calculator()
    names = {
        "+": ("plus", "dd", "Sum", "total"),
        "-": ("minus", "away", "ubtract", "less", "difference"),
        "*": ("times", "ultipl", "Times", "roduct"),
        "/": ("ivide", "over", "plit", "shared", "Quotient"),
    }
    worded = 0
    for i in range(100):
        user, assistant = task.conversation(i)
        parts = {p["type"]: p["text"] for p in assistant["content"]}
        assert parts["python_output"] == calc.run(parts["python"]).output
        if parts["python"] not in user["content"]:  # the operator in words, the operands in order
            a, op, b = parts["python"].split(" ")
            assert any(name in user["content"] for name in names[op]), user["content"]
            question = user["content"]
            if re.search(r"\d+ (away )?from", question):  # "Take b away from a": b is named first
                assert question.index(b) < question.index(a)
            else:
                assert question.index(a) < question.index(b) or a == b
            worded += 1
    assert 15 < worded < 60
    assert task.conversation(3) == task.conversation(3)


def test_spelling_counts_match_str_count():
    task = SpellingTask()
    checked = listed = single = 0
    for i in range(200):
        user, assistant = task.conversation(i)
        text = assistant["content"]
        if "appears" in text:
            word = text.removeprefix("Spelling it out: ").split(".")[0].replace(" ", "")
            letter = text.split("The letter ")[1][0]
            count = int(text.split(" appears ")[1].split()[0])
            assert count == word.count(letter)
            checked += 1
        elif text.startswith("Letter by letter: "):
            spelled = text.removeprefix("Letter by letter: ").removesuffix(".")
            word = spelled.replace(" ", "")
            assert spelled == " ".join(word) and f" {word}" in user["content"].replace("'", " ")
            single += 1
        else:  # a list, a word a line
            for line in text.split("\n"):
                word, spelled = line.removeprefix("- ").split(": ")
                assert spelled == " ".join(word) and word in user["content"]
                listed += 1
    assert checked > 50 and listed > 100 and single > 40


def test_spelling_questions_are_half_plain_and_mostly_common_words():
    plain, dressed = plain_and_dressed()
    assert set(plain) | set(dressed) == set(spell_templates()) and not set(plain) & set(dressed)
    dressings = (
        "please",
        "can you",
        "could you",
        "would you",
        "i need you",
        "quick",
        "hey",
        "sorry",
        "i forgot",
    )
    assert not any(p.lower().startswith(dressings) for p in plain)
    assert all(d.lower().startswith(dressings) for d in dressed)
    assert sum(p.startswith("Spell ") for p in plain) >= 10  # the verb first, as people ask
    rng = random.Random(0)
    drawn = [draw_phrasing(rng) for _ in range(4000)]
    assert 0.45 < sum(p in plain for p in drawn) / len(drawn) < 0.55  # evenly over all would be ~0.16
    common = set(spelling_words()[0])
    words = [draw_word(rng) for _ in range(4000)]
    assert 0.83 < sum(w in common for w in words) / len(words) < 0.9


def test_identity_names_the_model_and_the_owner():
    task = IdentityTask(owner="Ada")
    chats = [task.conversation(i) for i in range(300)]
    replies = [chat[1]["content"] for chat in chats]
    assert all("Ada" in r for r in replies)
    # the name comes first: in the reply's first sentence, or right after a greeting back
    for reply in replies:
        first = reply.removeprefix("Hello! ").split(". ")[0]
        assert "picochat" in first, reply
    questions = [chat[0]["content"] for chat in chats]
    greeted = [q for q in questions if q.startswith(tuple(GREETINGS))]
    assert greeted and all(r.startswith("Hello! ") for q, r in zip(questions, replies) if q in greeted)
    are_you = [r for q, r in zip(questions, replies) if "are you" in q.lower() and "?" in q]
    # "Are you X?" is answered with the name before X is denied (or confirmed)
    assert any(r.startswith("No, I'm picochat, ") for r in are_you) and any(
        r.startswith("Yes, I'm picochat") for r in are_you
    )


def test_mixture_is_deterministic_and_weighted():
    mixture = parse_mixture("identity:1,arithmetic:3", seed=1)
    names = [mixture.conversation(n)[0] for n in range(400)]
    assert names == [mixture.conversation(n)[0] for n in range(400)]
    assert 0.65 < names.count("arithmetic") / 400 < 0.85
    with pytest.raises(UserError, match="unknown task"):
        parse_mixture("nonsense:1")


def test_jsonl_task_reads_messages_and_rejects_bad_lines(tmp_path):
    good = tmp_path / "chats.jsonl"
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    good.write_text(json.dumps({"messages": convo}) + "\n\n" + json.dumps(convo) + "\n")
    task = JsonlTask(good)
    assert task.size == 2 and task.conversation(0) == convo == task.conversation(1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n')
    with pytest.raises(UserError, match="bad.jsonl:1"):
        JsonlTask(bad)


def test_loader_learns_only_assistant_tokens(tokenizer):
    mixture = parse_mixture("identity,arithmetic,spelling", seed=0)
    loader = SFTLoader(mixture, tokenizer, batch_size=4, seq_len=96)
    inputs, targets = next(loader)
    assert inputs.shape == targets.shape == (4, 96)
    # rebuild the expected rows from the rendered conversations independently
    n = 0
    for b in range(4):
        row, learn = [], []
        while True:
            ids, mask = tokenizer.render_conversation(mixture.conversation(n)[1], max_tokens=97)
            if row and len(row) + len(ids) > 97:
                break
            row += ids[: 97 - len(row)]
            learn += mask[: len(ids[: 97 - len(learn)])]
            n += 1
            if len(row) >= 97:
                break
        row += [tokenizer.bos_id] * (97 - len(row))
        learn += [0] * (97 - len(learn))
        assert inputs[b].tolist() == row[:-1]
        assert targets[b].tolist() == [t if m else -1 for t, m in zip(row[1:], learn[1:])]
        assert inputs[b, 0] == tokenizer.bos_id
    assert (targets != -1).any() and (targets == -1).any()
    assert loader.state_dict()["next_local"] == n


def test_loader_resumes_exactly_and_ranks_split_conversations(tokenizer):
    mixture = parse_mixture("identity,arithmetic,spelling", seed=0)
    a = SFTLoader(mixture, tokenizer, 2, 64)
    for _ in range(3):
        next(a)
    state = json.loads(json.dumps(a.state_dict()))
    expected = next(a)
    b = SFTLoader(mixture, tokenizer, 2, 64)
    b.load_state_dict(state)
    got = next(b)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    # virtual ranks 0 and 1 of 2 take the even and odd conversations
    r0, r1 = (SFTLoader(mixture, tokenizer, 1, 512, rank=r, world_size=2) for r in (0, 1))
    assert r0._render(0) == tokenizer.render_conversation(mixture.conversation(0)[1], max_tokens=513)
    assert r1._render(0) == tokenizer.render_conversation(mixture.conversation(1)[1], max_tokens=513)
    with pytest.raises(UserError):
        r1.load_state_dict(r0.state_dict())


def test_sft_trains_with_every_shared_setting_it_is_given(tokenizer, tmp_path):
    """`--weight-decay` (once accepted and ignored by sft) reaches the optimizer, like every shared setting."""
    base = save_checkpoint(
        tmp_path / "base", tiny_gpt(tokenizer.vocab_size), CheckpointMeta(step=1), tokenizer=tokenizer
    )
    settings = dict(base=base, run_dir=tmp_path / "sft", mix="identity,arithmetic", seq_len=64)
    settings |= dict(device_batch=2, batch_tokens=256, steps=2, eval_batches=1, dtype="fp32")
    settings |= dict(weight_decay=0.1, matrix_lr=0.05, lr_frac=0.5)
    config = resolve(SFTConfig, [settings])
    result = sft(config)
    assert result["step"] == 2 and result["bpb"] > 0
    checkpoint = latest_checkpoint(tmp_path / "sft")
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    groups = [g for state in optimizer["optimizers"] for g in state["param_groups"]]
    muon_groups = [g for g in groups if g.get("name") == "matrices"]
    assert muon_groups and all(g["weight_decay"] == 0.1 for g in muon_groups)
    assert all(g["initial_lr"] == pytest.approx(0.05 * 0.5) for g in muon_groups)
    assert json.loads((checkpoint / "meta.json").read_text())["config"]["weight_decay"] == 0.1


@pytest.mark.parametrize("spec", ["identity:0", "identity:-1", "identity:nan", "identity:inf"])
def test_a_mixture_weight_must_be_a_finite_number_above_zero(spec):
    from picochat.tasks import parse_mixture, parse_task_mix

    with pytest.raises(UserError, match="finite number above 0"):
        parse_mixture(spec)
    with pytest.raises(UserError, match="finite number above 0"):
        parse_task_mix(spec.replace("identity", "spelling"))


def test_tasks_read_and_the_rooms_fetch(tmp_path, monkeypatch):
    """The chitchat task never downloads: without its files it says how to get them, and
    fetch_task_data fetches them for a mixture that has chitchat, and only then."""
    import picochat.data.fetch as fetch
    from picochat.tasks.chitchat import ChitchatTask

    with pytest.raises(UserError, match="picochat sft"):
        ChitchatTask(tmp_path / "nothing")
    fetched = []
    monkeypatch.setattr(fetch, "fetch_package", lambda package, dest: fetched.append((package, dest)))
    fetch.fetch_task_data("identity:2,arithmetic:4,jsonl:/data/chitchat.jsonl:1")
    assert fetched == []
    fetch.fetch_task_data("identity:2, chitchat:1")
    assert [p.name for p, _ in fetched] == ["chitchat-dataset"]
    dataset = tmp_path / "root" / "chitchat_dataset" / "dataset.json"
    dataset.parent.mkdir(parents=True)
    dataset.write_text(json.dumps({"a": {"messages": [[{"text": "hi"}], [{"text": "hello there"}]]}}))
    assert ChitchatTask(tmp_path).conversation(0) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
    ]
