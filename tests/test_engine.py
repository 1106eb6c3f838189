"""The engine: KV-cache decoding equals full-forward decoding, sampling is seeded per row, stop rules hold,
tool calls get their output forced in, and streams never split a character."""

import pytest
import torch
from tiny_models import ScriptedModel, tiny_gpt

from picochat.engine import Engine, SamplingParams, row_seed, sampling_probs
from picochat.equations import log_softmax
from picochat.errors import UserError
from picochat.model import GPT
from picochat.tokenizer import Tokenizer
from picochat.tools.sandbox import get_tool

TRAINING_TEXT = """
The engine reads a prompt once and then writes one token at a time. Each new token looks back at the keys
and values of every token before it, which the cache keeps, so nothing is computed twice. A chat model
answers the user, calls a tool when it needs to add numbers, and stops when it has said what it wanted.
Café au lait, crème brûlée and a naïve façade: accents take two bytes in UTF-8. 北京 and 東京 take three,
and emoji such as 🙂 and 🚀 take four. The quick brown fox jumps over the lazy dog; the lazy dog sleeps.
What is 2+3? It is 5. What is 12*7? It is 84. Numbers, words, punctuation and spaces all become tokens.
"""


def tiny_tokenizer() -> Tokenizer:
    return Tokenizer.train([TRAINING_TEXT * 4], vocab_size=300)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    return tiny_gpt(tok.vocab_size)


def scripted_engine(tok, script, prompt, tool="calculator", run_steps=None) -> Engine:
    model = ScriptedModel(script, len(prompt), tok.vocab_size)
    return Engine(model, tok, tool=tool, dtype="fp32", run_steps=run_steps)


def full_forward_greedy(model, tok, prompt, max_tokens):
    """The slow, obviously correct decoder: the whole sequence through the model for every new token."""
    stops = {tok.special_id("<|assistant_end|>"), tok.bos_id}
    ids, logprobs = list(prompt), []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(torch.tensor([ids]))[0, -1]
            token = int(logits.argmax())
            ids.append(token)
            logprobs.append(float(log_softmax(logits)[token]))
            if token in stops:
                break
    return ids[len(prompt) :], logprobs


# ---- KV cache against the full forward pass ---------------------------------------------------------------


@pytest.mark.parametrize(
    "texts", [["The engine reads"], ["What", "The quick brown fox jumps over", "Café 北京"]]
)
def test_cached_greedy_decoding_equals_full_forward(model, tok, texts):
    prompts = [tok.encode(t, prepend=tok.bos_id) for t in texts]
    assert len({len(p) for p in prompts}) == len(prompts)  # every row a different length
    engine = Engine(model, tok, tool=None, dtype="fp32")
    results = engine.generate(prompts, SamplingParams(max_tokens=24, temperature=0))
    for prompt, result in zip(prompts, results):
        tokens, logprobs = full_forward_greedy(model, tok, prompt, 24)
        assert result.tokens == tokens
        assert result.logprobs == pytest.approx(logprobs, abs=1e-4)
        assert result.mask == [1] * len(tokens)


def test_batched_rows_equal_single_rows(model, tok):
    prompts = [tok.encode(t, prepend=tok.bos_id) for t in ["A chat", "Numbers, words and", "🙂"]]
    engine = Engine(model, tok, tool=None, dtype="fp32")
    params = SamplingParams(max_tokens=16, temperature=0.8, seed=5)
    batched = engine.generate(prompts, params)
    # row b of a batch draws from the generator seeded with (seed, b), so run each prompt alone as row b
    for b, prompt in enumerate(prompts):
        alone = engine.generate([[tok.bos_id]] * b + [prompt], params)[b]
        assert alone.tokens == batched[b].tokens


@pytest.mark.parametrize("params", [
    SamplingParams(max_tokens=23, temperature=0),
    SamplingParams(max_tokens=23, temperature=0.9, top_k=20, seed=7),
    SamplingParams(max_tokens=23, temperature=1.0, seed=3, stop=("e",)),
])  # fmt: skip
def test_runs_of_steps_write_what_single_steps_write(model, tok, params):
    """Picking on the device, 5 steps per trip (23 tokens: runs end mid-way), writes what one step at a time
    writes: the same tokens, log-probabilities, text and ends, rows of different lengths in one batch."""
    prompts = [tok.encode(t, prepend=tok.bos_id) for t in ["A", "The quick brown fox", "What is 2+3? It"]]
    single = Engine(model, tok, tool=None, dtype="fp32").generate(prompts, params)
    runs = Engine(model, tok, tool=None, dtype="fp32", run_steps=5).generate(prompts, params)
    for one, run in zip(single, runs):
        assert (run.tokens, run.text, run.finish_reason, run.mask) == (
            one.tokens,
            one.text,
            one.finish_reason,
            one.mask,
        )
        assert run.logprobs == pytest.approx(one.logprobs, abs=1e-5)
    if params.stop:  # the stop string did end a row inside a run
        assert any(r.finish_reason == "stop_string" for r in single)


# ---- sampling ---------------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_rows_independent(model, tok):
    prompt = tok.encode("The lazy dog", prepend=tok.bos_id)
    engine = Engine(model, tok, tool=None, dtype="fp32")
    params = SamplingParams(max_tokens=20, temperature=1.0, seed=42)
    first = engine.generate([prompt, prompt, prompt], params)
    again = engine.generate([prompt, prompt, prompt], params)
    assert [r.tokens for r in first] == [r.tokens for r in again]
    assert len({tuple(r.tokens) for r in first}) == 3  # same prompt, independent rows, different samples
    other_seed = engine.generate([prompt], SamplingParams(max_tokens=20, temperature=1.0, seed=43))
    assert other_seed[0].tokens != first[0].tokens
    # a row's sample does not depend on what the other rows hold
    other_rows = engine.generate([prompt, tok.encode("What is 2+3?", prepend=tok.bos_id)], params)
    assert other_rows[0].tokens == first[0].tokens
    assert row_seed(42, 0) != row_seed(42, 1) != row_seed(43, 0)


def test_sampling_filters_match_their_definitions():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0]])
    p = torch.softmax(logits / 0.5, dim=-1)
    probs = sampling_probs(logits, SamplingParams(temperature=0.5))
    assert torch.allclose(probs, p)
    probs = sampling_probs(logits, SamplingParams(top_k=2))
    expected = torch.softmax(logits, -1) * torch.tensor([1, 0, 0, 0, 1])
    assert torch.allclose(probs, expected / expected.sum())
    # top-p: sorted probabilities .665 .245 .090 .033 .012; p=0.8 keeps the two that first reach it
    probs = sampling_probs(logits, SamplingParams(top_p=0.8))
    assert (probs > 0).tolist() == [[True, False, False, False, True]]
    probs = sampling_probs(logits, SamplingParams(top_p=0.95))
    assert (probs > 0).tolist() == [[True, True, False, False, True]]
    # min-p 0.3: keep tokens with at least 0.3 × the top probability (.665 → threshold .2)
    probs = sampling_probs(logits, SamplingParams(min_p=0.3))
    assert (probs > 0).tolist() == [[True, False, False, False, True]]
    assert torch.allclose(probs.sum(-1), torch.ones(1))


def test_sampling_params_refuse_bad_values():
    for bad in (dict(max_tokens=0), dict(temperature=-1), dict(top_k=0), dict(top_p=0), dict(min_p=2)):
        with pytest.raises(UserError):
            SamplingParams(**bad)
    assert SamplingParams(stop="\n").stop == ("\n",)


# ---- stopping ---------------------------------------------------------------------------------------------


def test_max_tokens_and_stop_token(tok):
    prompt = [tok.bos_id]
    end = tok.special_id("<|assistant_end|>")
    words = tok.encode(" the lazy dog sleeps")
    result = scripted_engine(tok, [*words, end], prompt).generate([prompt], SamplingParams(temperature=0))[0]
    assert (result.finish_reason, result.tokens, result.text) == (
        "stop",
        [*words, end],
        " the lazy dog sleeps",
    )
    short = scripted_engine(tok, [*words, end], prompt).generate([prompt], SamplingParams(max_tokens=2))[0]
    assert (short.finish_reason, short.tokens) == ("length", words[:2])


def test_stop_string_cuts_text_and_stream_holds_it_back(tok):
    prompt = [tok.bos_id]
    script = tok.encode("The quick brown fox jumps") + [tok.special_id("<|assistant_end|>")]
    engine = scripted_engine(tok, script, prompt)
    params = SamplingParams(temperature=0, stop=("nothing here", "own f"))
    result = engine.generate([prompt], params)[0]
    assert (result.finish_reason, result.text) == ("stop_string", "The quick br")
    deltas = list(engine.stream(prompt, params))
    assert "".join(deltas) == "The quick br"


def test_prompts_must_fit(tok, model):
    engine = Engine(model, tok, tool=None, dtype="fp32")
    with pytest.raises(UserError, match="at least one token"):
        engine.generate([[]], SamplingParams())
    with pytest.raises(UserError, match="no room"):
        engine.generate([[tok.bos_id] * model.config.rope_len], SamplingParams())
    # a prompt near the end of the positions still generates, until the positions run out
    result = engine.generate([[tok.bos_id] * (model.config.rope_len - 3)], SamplingParams(max_tokens=50))
    assert result[0].finish_reason in ("length", "stop") and len(result[0].tokens) <= 3


# ---- streaming --------------------------------------------------------------------------------------------


def test_stream_never_splits_a_character(tok):
    text = "é北🙂!"
    script = list(text.encode("utf-8")) + [tok.special_id("<|assistant_end|>")]  # one byte per token
    engine = scripted_engine(tok, script, [tok.bos_id])
    deltas = list(engine.stream([tok.bos_id], SamplingParams(temperature=0)))
    assert deltas == ["é", "北", "🙂", "!"]


def test_stream_equals_generated_text(model, tok):
    engine = Engine(model, tok, dtype="fp32")
    prompt = tok.encode("Café", prepend=tok.bos_id)
    params = SamplingParams(max_tokens=40, seed=3)
    stream = engine.stream(prompt, params)
    deltas = []
    while True:
        try:
            deltas.append(next(stream))
        except StopIteration as finished:
            result = finished.value
            break
    assert "".join(deltas) == result.text == engine.generate([prompt], params)[0].text
    kept = [t for t in result.tokens if t not in engine.stop_ids]
    assert result.text == tok.decode(kept)


# ---- tools ------------------------------------------------------------------------------------------------


def tool_script(tok, claimed_output: str) -> list[int]:
    special = tok.special_id
    return [
        *tok.encode("So"),
        special("<|python_start|>"),
        *tok.encode("2+3"),
        special("<|python_end|>"),
        special("<|output_start|>"),
        *tok.encode(claimed_output),
        special("<|output_end|>"),
        *tok.encode(" it is 5."),
        special("<|assistant_end|>"),
    ]


@pytest.mark.parametrize("run_steps", [1, 4])  # 4: the call ends inside a run, which is set back to it
def test_calculator_output_is_forced_into_the_stream(tok, run_steps):
    prompt = tok.render_for_completion([{"role": "user", "content": "What is 2+3?"}])
    # the model would claim 9
    engine = scripted_engine(tok, tool_script(tok, "9"), prompt, run_steps=run_steps)
    result = engine.generate([prompt], SamplingParams(temperature=0))[0]
    assert result.tokens == tool_script(tok, "5")
    assert result.text == "So<|python_start|>2+3<|python_end|><|output_start|>5<|output_end|> it is 5."
    forced = [i for i, m in enumerate(result.mask) if m == 0]
    assert [result.tokens[i] for i in forced] == [
        tok.special_id("<|output_start|>"),
        *tok.encode("5"),
        tok.special_id("<|output_end|>"),
    ]
    assert (result.tool_calls, result.finish_reason) == (1, "stop")
    streamed = "".join(engine.stream(prompt, SamplingParams(temperature=0)))
    assert streamed == result.text
    assert (
        engine.chat([{"role": "user", "content": "What is 2+3?"}], SamplingParams(temperature=0))
        == result.text
    )


def test_without_a_tool_nothing_is_forced(tok):
    prompt = [tok.bos_id]
    result = scripted_engine(tok, tool_script(tok, "9"), prompt, tool=None).generate(
        [prompt], SamplingParams(temperature=0)
    )[0]
    assert result.tokens == tool_script(tok, "9") and result.tool_calls == 0 and all(result.mask)


def test_tool_errors_reach_the_model(tok):
    prompt = [tok.bos_id]
    script = [tok.special_id("<|python_start|>"), *tok.encode("1/0"), tok.special_id("<|python_end|>")]
    script += [tok.special_id("<|assistant_end|>")] * 40
    result = scripted_engine(tok, script, prompt).generate([prompt], SamplingParams(temperature=0))[0]
    assert "<|output_start|>error:" in result.text and result.tool_calls == 1


def test_bf16_autocast_decoding_runs_and_agrees_at_first_token(model, tok):
    prompt = tok.encode("The engine reads", prepend=tok.bos_id)
    fp32 = Engine(model, tok, tool=None, dtype="fp32").generate(
        [prompt], SamplingParams(max_tokens=8, temperature=0)
    )
    bf16 = Engine(model, tok, tool=None, dtype="bf16").generate(
        [prompt], SamplingParams(max_tokens=8, temperature=0)
    )
    assert len(bf16[0].tokens) == len(fp32[0].tokens)
    assert bf16[0].logprobs[0] == pytest.approx(fp32[0].logprobs[0], abs=0.3)


def test_python_tool_runs_in_the_sandbox(tok):
    prompt = [tok.bos_id]
    script = [tok.special_id("<|python_start|>"), *tok.encode("print(6*7)"), tok.special_id("<|python_end|>")]
    script += [tok.special_id("<|assistant_end|>")] * 40
    result = scripted_engine(tok, script, prompt, tool=get_tool("python")).generate(
        [prompt], SamplingParams(temperature=0)
    )[0]
    assert "<|output_start|>42" in result.text and result.tool_calls == 1


def test_the_engine_takes_the_sandbox_only_as_a_ready_tool(tok, model):
    with pytest.raises(UserError, match="get_tool"):
        Engine(model, tok, tool="python")
    assert Engine(model, tok, tool="none").tool is None
