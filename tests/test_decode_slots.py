"""DecodeSlots: a static-shape KV cache decoded slot by slot gives the logits of the full forward pass, and
a slot's logits do not depend on what the other slots hold."""

import pytest
import torch
from torch._dynamo.utils import counters

from picochat.decode import DecodeSlots, attention_window, prefill_passes, weight_versions
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.runtime import can_compile

VOCAB = 97


@pytest.fixture(scope="module")
def model() -> GPT:
    """A 2-layer GQA GPT with every weight random (the init zeroes output projections)."""
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def sequence(seed: int, n: int) -> list[int]:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def full_forward(model: GPT, ids: list[int]) -> torch.Tensor:
    """The obviously correct computation: every position's logits (T, V) from one pass without a cache."""
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]


def test_prefill_and_steps_equal_the_full_forward(model):
    slots = DecodeSlots(model, num_slots=3, max_len=100)
    texts = {0: sequence(1, 70), 2: sequence(2, 9)}  # slot 1 stays empty; slot 0 crosses windows 64 → 128
    prompts = {slot: ids[:5] for slot, ids in texts.items()}
    first = slots.prefill_many(list(prompts), list(prompts.values()))
    for i, slot in enumerate(prompts):
        expected = full_forward(model, prompts[slot])[-1]
        torch.testing.assert_close(first[i], expected, atol=1e-4, rtol=1e-4)
    for t in range(5, 9):
        tokens = torch.tensor([texts[0][t], 0, texts[2][t]])
        logits = slots.step(tokens, torch.tensor([True, False, True])).logits
        for slot in (0, 2):
            torch.testing.assert_close(
                logits[slot], full_forward(model, texts[slot][: t + 1])[-1], atol=1e-4, rtol=1e-4
            )
    assert [slots.length(s) for s in range(3)] == [9, 0, 9]
    # prefill appends to a slot that already holds tokens (a forced tool output), then steps go on
    appended = slots.prefill(0, texts[0][9:68])
    torch.testing.assert_close(appended, full_forward(model, texts[0][:68])[-1], atol=1e-4, rtol=1e-4)
    logits = slots.step(torch.tensor([texts[0][68], 0, 0]), torch.tensor([True, False, False])).logits
    torch.testing.assert_close(logits[0], full_forward(model, texts[0][:69])[-1], atol=1e-4, rtol=1e-4)
    assert [slots.length(s) for s in range(3)] == [69, 0, 9]


def test_free_slot_starts_over(model):
    slots = DecodeSlots(model, num_slots=2, max_len=32)
    slots.prefill(1, sequence(3, 20))
    slots.free(1)
    assert slots.length(1) == 0
    fresh = sequence(4, 6)
    torch.testing.assert_close(slots.prefill(1, fresh), full_forward(model, fresh)[-1], atol=1e-4, rtol=1e-4)


def test_a_slot_does_not_depend_on_the_other_slots(model):
    """The same slot-0 sequence next to different neighbours (empty, short, long, full, inactive or
    active) gives bit-identical logits: static shapes make batch composition irrelevant."""
    mine = sequence(5, 12)

    def run(neighbours: list[list[int]], neighbours_active: bool) -> list[torch.Tensor]:
        slots = DecodeSlots(model, num_slots=1 + len(neighbours), max_len=80)
        out = [slots.prefill(0, mine[:4])]
        for i, ids in enumerate(neighbours, start=1):
            if ids:
                slots.prefill(i, ids)
        for t in range(4, 12):
            others = [neighbours_active and 0 < len(ids) < slots.max_len for ids in neighbours]
            tokens = torch.tensor([mine[t]] + [7] * len(neighbours))
            out.append(slots.step(tokens, torch.tensor([True, *others])).logits[0])
        return out

    alone = run([[], []], False)
    for neighbours, active in [
        ([sequence(6, 3), sequence(7, 70)], True),  # a neighbour pushes the attention window to 128
        ([sequence(8, 80), sequence(9, 40)], True),  # a full neighbour sits idle
        ([sequence(10, 50), []], False),
    ]:
        for a, b in zip(alone, run(neighbours, active), strict=True):
            assert torch.equal(a, b)


def test_mistakes_are_reported(model):
    slots = DecodeSlots(model, num_slots=2, max_len=8)
    with pytest.raises(UserError, match="slot 2 does not exist"):
        slots.prefill(2, [1])
    with pytest.raises(UserError, match="exceed"):
        slots.prefill(0, list(range(9)))
    with pytest.raises(UserError, match="at least one token"):
        slots.prefill(0, [])
    with pytest.raises(UserError, match="token ids"):
        slots.prefill(0, [VOCAB])
    slots.prefill(0, list(range(8)))
    with pytest.raises(UserError, match="full"):
        slots.step(torch.tensor([1, 1]), torch.tensor([True, False]))
    with pytest.raises(UserError, match="shape"):
        slots.step(torch.tensor([1]), torch.tensor([True]))
    with pytest.raises(UserError, match="max_len"):
        DecodeSlots(model, num_slots=1, max_len=model.config.rope_len + 1)


def test_attention_windows_are_few():
    assert [attention_window(n, 1000) for n in (1, 64, 65, 200, 513, 999)] == [64, 64, 128, 256, 1000, 1000]


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(torch.device("cpu")), reason="torch.compile on a CPU needs a C compiler")
def test_compiled_engine_writes_the_eager_engines_tokens():
    """The one compiled test (compiling takes a while): greedy tokens of the compiled step equal the eager
    step's, for rows of different lengths, across attention windows (one graph serves them all)."""
    from picochat.tokenizer import Tokenizer

    words = "the engine reads a prompt once and then writes one token at a time while the cache keeps keys"
    tok = Tokenizer.train(
        [" ".join(words.split()[i:] + words.split()[:i]) for i in range(20)], vocab_size=300
    )
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    prompts = [[tok.bos_id, *ids] for ids in (sequence(11, 3), sequence(12, 50), sequence(13, 20))]
    params = SamplingParams(max_tokens=40, temperature=0)
    eager = Engine(model, tok, tool=None, dtype="fp32").generate(prompts, params)
    compiled_engine = Engine(model, tok, tool=None, dtype="fp32", compile=True)
    counters.clear()
    compiled = compiled_engine.generate(prompts, params)
    assert compiled_engine._slots.compiled
    # one graph for the whole generation: every window, and the first step of a run as well as the rest
    assert counters["stats"]["unique_graphs"] == 1
    assert [r.tokens for r in compiled] == [r.tokens for r in eager]
    assert max(len(p) + len(r.tokens) for p, r in zip(prompts, eager)) > 64  # two attention windows
    for c, e in zip(compiled, eager):
        assert c.logprobs == pytest.approx(e.logprobs, abs=1e-4)

    # a longer turn, past 256 positions: the same slots (a tiny model's whole context fits in them) and
    # the same graph, no compiling again, and still the eager tokens
    slots, longer = compiled_engine._slots, [[*p, *sequence(14 + i, 280)] for i, p in enumerate(prompts)]
    assert slots.max_len == model.config.rope_len
    counters.clear()
    compiled = compiled_engine.generate(longer, SamplingParams(max_tokens=6, temperature=0))
    assert compiled_engine._slots is slots and counters["stats"]["unique_graphs"] == 0
    eager = Engine(model, tok, tool=None, dtype="fp32").generate(
        longer, SamplingParams(max_tokens=6, temperature=0)
    )
    assert [r.tokens for r in compiled] == [r.tokens for r in eager]


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(torch.device("cpu")), reason="torch.compile on a CPU needs a C compiler")
def test_compiled_engine_sees_weights_updated_in_place():
    """RL samples with one compiled engine while the optimizer updates the policy in place between rollouts:
    the compiled step must read the parameters as they are now (not constants baked into the graph, not a
    stale cast copy), so after the update it writes what a fresh eager engine writes on the new weights."""
    from test_serve_fixtures import tiny_tokenizer
    from tiny_models import tiny_gpt

    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size, seed=3)
    prompts = [[tok.bos_id, *sequence(21, 5)], [tok.bos_id, *sequence(22, 9)]]
    params = SamplingParams(max_tokens=12, temperature=0)
    compiled_engine = Engine(model, tok, tool=None, dtype="fp32", compile=True)
    before = [r.tokens for r in compiled_engine.generate(prompts, params)]
    assert compiled_engine._slots.compiled

    model.train()  # as in RL: an optimizer step on a loss, then decode again with the same engine
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    inputs = torch.tensor([prompts[1]])
    model(inputs[:, :-1]).logsumexp(-1).mean().backward()
    optimizer.step()
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.5)  # and a plain in-place write, which surely changes greedy tokens
    model.eval()

    after = compiled_engine.generate(prompts, params)
    eager = Engine(model, tok, tool=None, dtype="fp32").generate(prompts, params)
    assert [r.tokens for r in after] == [r.tokens for r in eager]
    assert [r.tokens for r in after] != before  # the new weights write something else
    for c, e in zip(after, eager):
        assert c.logprobs == pytest.approx(e.logprobs, abs=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(torch.device("cpu")), reason="torch.compile on a CPU needs a C compiler")
def test_frozen_engine_writes_the_eager_tokens_and_refuses_changed_weights():
    """A frozen step (the weights compiled in as constants, the products through inductor's own GEMM
    kernels) writes the eager engine's greedy tokens with its log-probabilities; once the weights change in
    place, decoding with it again is an error, not replies from the old weights."""
    from test_serve_fixtures import tiny_tokenizer
    from tiny_models import tiny_gpt

    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size, seed=4)
    prompts = [
        [tok.bos_id, *sequence(31, 4)],
        [tok.bos_id, *sequence(32, 70)],
        [tok.bos_id, *sequence(33, 9)],
    ]
    params = SamplingParams(max_tokens=24, temperature=0)
    eager = Engine(model, tok, tool=None, dtype="fp32").generate(prompts, params)
    frozen_engine = Engine(model, tok, tool=None, dtype="fp32", compile=True, freeze=True)
    frozen = frozen_engine.generate(prompts, params)
    assert frozen_engine._slots.frozen
    assert [r.tokens for r in frozen] == [r.tokens for r in eager]
    for c, e in zip(frozen, eager):
        assert c.logprobs == pytest.approx(e.logprobs, abs=1e-4)

    with torch.no_grad():
        model.lm_head.weight.mul_(-1.5)
    with pytest.raises(UserError, match="weights changed"):
        frozen_engine.generate(prompts, params)
    # what the check prevents: past it, the step still decodes with the old weights, baked in as constants
    slots = frozen_engine._slots
    slots._versions = weight_versions(slots._params)
    stale = frozen_engine.generate(prompts, params)
    fresh = Engine(model, tok, tool=None, dtype="fp32").generate(prompts, params)
    assert [r.tokens for r in stale] != [r.tokens for r in fresh]


def test_prefill_many_gives_the_one_at_a_time_logits(model):
    """Prompts of mixed lengths and starts prefilled together (padded passes, a long one apart) give each
    slot the logits and cache of prefilling it alone, to fp32 rounding: the next steps agree too."""
    lengths = [3, 9, 5, 40, 7, 6]
    prompts = [sequence(10 + i, n) for i, n in enumerate(lengths)]
    assert prefill_passes([0, 0, 0, 0, 0, 2], lengths) == [[3], [1, 4, 2], [0], [5]]
    assert prefill_passes([0] * 4, [8] * 4, budget=16) == [[0, 1], [2, 3]]
    together, alone = DecodeSlots(model, 6, 64), DecodeSlots(model, 6, 64)
    together.prefill(5, [1, 2]), alone.prefill(5, [1, 2])  # slot 5 starts at position 2
    first = together.prefill_many(list(range(6)), prompts)
    expected = torch.stack([alone.prefill(slot, ids) for slot, ids in enumerate(prompts)])
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(first.argmax(-1), expected.argmax(-1))
    tokens, active = first.argmax(-1), torch.ones(6, dtype=torch.bool)
    torch.testing.assert_close(
        together.step(tokens, active).logits, alone.step(tokens, active).logits, atol=1e-5, rtol=1e-5
    )
    assert [together.length(s) for s in range(6)] == [n + 1 for n in lengths[:5]] + [lengths[5] + 3]
