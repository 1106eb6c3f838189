"""Constrained decoding libraries on picochat's tokenizer: setup, grammar compile, per-token mask cost.

    PYTHONPATH=$PWD python bench/bench_structured.py [--vocab 300 4096] [--tokens 120] [--serve]

For each library (llguidance, outlines-core, lm-format-enforcer) and tokenizer size: the one-off tokenizer
setup, the compile of one JSON schema (a request's cost), the first mask, the mean mask per token over a
reply picked by argmax of seeded random logits under the mask, whether the reply parses and validates (keys, 0 <= age <= 150), and
whether a special token other than <|assistant_end|> was ever allowed. --serve: the scheduler with a random
d4 GPT (fp32, eager) answering with and without the schema (llguidance): time to the first token, grammar
compile included, and the time per token.
"""

from __future__ import annotations

import argparse
import glob
import json
import threading
import time
from pathlib import Path

import torch

from picochat.engine import Engine, SamplingParams
from picochat.model import GPT, GPTConfig
from picochat.serve.scheduler import Finished, Scheduler, TextDelta
from picochat.serve.structured import Grammar
from picochat.tokenizer import Tokenizer
from picochat.tokenizer.vocab import SPECIAL_TOKENS

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age", "ok", "tags"],
    "additionalProperties": False,
}


def llguidance_lib(tok: Tokenizer, end: int):
    import llguidance
    from llguidance.tiktoken import lltokenizer_from_encoding

    lltok = lltokenizer_from_encoding(tok._encoding, n_vocab=tok.vocab_size, eos_token=end)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA, defaults={"whitespace_flexible": False})

    def compile_():
        matcher = llguidance.LLMatcher(lltok, grammar)
        assert not matcher.is_error(), matcher.get_error()

        def mask():
            bits = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.int32)
            return ((bits.unsqueeze(1) >> torch.arange(32)) & 1).flatten()[: tok.vocab_size].bool()

        return mask, matcher.consume_token

    return compile_


def outlines_lib(tok: Tokenizer, end: int):
    import outlines_core

    specials = set(tok.special_tokens.values())
    pieces = {}
    for i in range(tok.vocab_size):
        if i not in specials:
            pieces.setdefault(tok.decode_bytes([i]), []).append(i)
    vocabulary = outlines_core.Vocabulary(end, pieces)
    regex = outlines_core.json_schema.build_regex_from_schema(json.dumps(SCHEMA))

    def compile_():
        guide = outlines_core.Guide(outlines_core.Index(regex, vocabulary))

        def mask():
            allowed = torch.zeros(tok.vocab_size, dtype=torch.bool)
            allowed[guide.get_tokens()] = True
            return allowed

        return mask, lambda t: guide.advance(t, return_tokens=False)

    return compile_


def lmfe_lib(tok: Tokenizer, end: int):
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData

    specials = set(tok.special_tokens.values())
    regular = [
        (i, tok.decode([i]), tok.decode([i]).startswith(" "))
        for i in range(tok.vocab_size)
        if i not in specials
    ]
    data = TokenEnforcerTokenizerData(regular, tok.decode, end, False, tok.vocab_size)

    def compile_():
        enforcer, sequence = TokenEnforcer(data, JsonSchemaParser(SCHEMA)), []

        def mask():
            allowed = torch.zeros(tok.vocab_size, dtype=torch.bool)
            allowed[enforcer.get_allowed_tokens(sequence).allowed_tokens] = True
            return allowed

        return mask, sequence.append

    return compile_


def measure(name, make, tok: Tokenizer, max_tokens: int) -> dict:
    end = tok.special_id("<|assistant_end|>")
    others = [tok.special_id(s) for s in SPECIAL_TOKENS if s != "<|assistant_end|>"]
    t0 = time.perf_counter()
    compile_ = make(tok, end)
    t1 = time.perf_counter()
    mask, consume = compile_()
    t2 = time.perf_counter()
    generator, ids, times, special_allowed = torch.Generator().manual_seed(0), [], [], False
    for _ in range(max_tokens):
        start = time.perf_counter()
        allowed = mask()
        times.append(time.perf_counter() - start)
        special_allowed |= bool(allowed[others].any())
        logits = torch.randn(tok.vocab_size, generator=generator)
        token = int(torch.where(allowed, logits, -torch.inf).argmax())
        if token == end:
            break
        consume(token)
        ids.append(token)
    text = tok.decode(ids)
    try:
        reply, parses = json.loads(text), True
        valid = set(reply) == set(SCHEMA["required"]) and 0 <= reply["age"] <= 150
    except (json.JSONDecodeError, TypeError):
        parses = valid = False
    return {
        "library": name,
        "vocab": tok.vocab_size,
        "setup_s": round(t1 - t0, 3),
        "compile_ms": round((t2 - t1) * 1e3, 2),
        "first_mask_ms": round(times[0] * 1e3, 2),
        "mean_mask_ms": round(sum(times) / len(times) * 1e3, 3),
        "tokens": len(ids),
        "parses": parses,
        "valid": valid,
        "special_allowed": special_allowed,
        "text": text[:80],
    }


def serve_latency(tok: Tokenizer, constrained: bool, repeats: int = 5) -> dict:
    """Median time to the first token and per token of a 64-token chat reply through the Scheduler."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, seq_len=256, n_layer=4, n_head=4, n_kv_head=4, n_embd=256)
    engine = Engine(GPT(config).eval(), tok, dtype="fp32")
    scheduler = Scheduler(engine, num_slots=1, context=256).start()
    prompt = tok.render_for_completion([{"role": "user", "content": "Who are you? Answer in JSON."}])
    stops = sorted(engine.stop_ids)
    runs = []
    for repeat in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()  # the grammar's compile counts: a request pays it
        mask = Grammar(tok, tok.vocab_size, stops, SCHEMA).mask if constrained else None
        runs.append(one_reply(scheduler, prompt, SamplingParams(max_tokens=64, seed=repeat), mask, start))
    scheduler.stop()
    firsts, per_token = sorted(r[0] for r in runs[1:]), sorted(r[1] for r in runs[1:])
    return {
        "constrained": constrained,
        "vocab": tok.vocab_size,
        "first_token_ms": round(firsts[len(firsts) // 2] * 1e3, 2),
        "per_token_ms": round(per_token[len(per_token) // 2] * 1e3, 3),
    }


def one_reply(scheduler: Scheduler, prompt, params, mask, start: float) -> tuple[float, float]:
    """Seconds from `start` to the first token, and per token after it."""
    events, done = [], threading.Event()

    def sink(event):
        events.append((time.perf_counter(), event))
        if isinstance(event, Finished):
            done.set()

    scheduler.submit(prompt, params, 1, sink, mask=mask)
    done.wait()
    first = next(t for t, e in events if isinstance(e, TextDelta))
    return first - start, (events[-1][0] - first) / max(events[-1][1].completion_tokens - 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[300, 4096])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--serve", action="store_true", help="also time the scheduler, with and without")
    args = parser.parse_args()
    files = sorted(glob.glob("docs/*.md")) + sorted(glob.glob("picochat/**/*.py", recursive=True))
    text = "".join(Path(f).read_text() for f in files)
    libraries = {"llguidance": llguidance_lib, "outlines-core": outlines_lib, "lm-format-enforcer": lmfe_lib}
    for vocab in args.vocab:
        tok = Tokenizer.train([text], vocab_size=vocab)
        for name, make in libraries.items():
            try:
                print(json.dumps(measure(name, make, tok, args.tokens)), flush=True)
            except Exception as error:  # a library that cannot take this tokenizer: say so, go on
                print(json.dumps({"library": name, "vocab": vocab, "error": repr(error)[:200]}), flush=True)
        if args.serve:
            for constrained in (False, True):
                print(json.dumps(serve_latency(tok, constrained)), flush=True)


if __name__ == "__main__":
    main()
