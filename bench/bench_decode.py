"""Benchmark generation: picochat's Engine against Hugging Face `transformers` `generate`, same weights.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_decode.py
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_decode.py --depth 8 --runs 5

One GPT with random weights (every matrix random, so no layer is an identity) is copied into a
`transformers` NanoChatForCausalLM with equal dimensions; the two must give the same logits (checked first,
in fp32) before anything is timed. Then, for fp32 and bf16 (the weights cast to bf16 in both models), at
batch 1 and 8: greedy decoding of 128 new tokens after a 64-token prompt, stop tokens switched off (their
LM-head rows are zeroed, so greedy never picks them), median of --runs runs alternating between the engines:
picochat compiled (`Engine(..., compile=True)`: the decode step through torch.compile, 8 steps per trip
to the host, the tokens picked on the device), the same with the weights frozen into the step
(`freeze=True`: constants packed for inductor's own GEMM kernels), picochat eager (`compile=False`) and
transformers. The compiled engines are warmed up first (compilation is not timed).

Reported: time to first token (prefill + first token: a 1-token generation), total time for 128 tokens,
decode tokens/s = batch × 127 / (total − TTFT), and picochat ÷ transformers.
The tokenizer (vocab 8192) is trained here on the Python sources of the installed torch package, so the
engine decodes real text pieces; its special tokens get the zeroed rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picochat.chat_cli import ChatSession  # noqa: E402
from picochat.decode import WarmSlots  # noqa: E402
from picochat.engine import Engine, SamplingParams  # noqa: E402
from picochat.model import GPT, GPTConfig  # noqa: E402
from picochat.tokenizer import Tokenizer  # noqa: E402

PROMPT_LEN, NEW_TOKENS = 64, 128


def train_tokenizer(vocab_size: int) -> Tokenizer:
    sources = sorted(Path(torch.__file__).parent.rglob("*.py"))
    texts, size = [], 0
    for path in sources:
        texts.append(path.read_text(errors="replace"))
        size += len(texts[-1])
        if size > 8_000_000:
            break
    return Tokenizer.train(texts, vocab_size=vocab_size)


def random_gpt(config: GPTConfig, special_ids: list[int], seed: int = 0) -> GPT:
    """Every weight random with a scale that keeps activations O(1); special tokens never win greedy."""
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_tokens" not in name:
                p.normal_(0.0, 1.0 / p.size(1) ** 0.5)
        model.lm_head.weight[special_ids] = 0.0
    return model.eval()


def to_transformers(model: GPT):
    """The same weights in a transformers NanoChatForCausalLM (names = picochat's with a `model.` prefix)."""
    from transformers import NanoChatConfig, NanoChatForCausalLM

    cfg = model.config
    hf_config = NanoChatConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_ratio * cfg.n_embd,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.rope_len,
        hidden_act="relu2",
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
        final_logit_softcapping=cfg.softcap,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    hf = NanoChatForCausalLM(hf_config)
    state = {
        ("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v
        for k, v in model.state_dict().items()
    }
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary" not in k]
    if missing or unexpected:
        raise SystemExit(f"weights do not map: missing {missing}, unexpected {unexpected}")
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf.eval()


def check_same_logits(model: GPT, hf, prompts: torch.Tensor) -> float:
    with torch.no_grad():
        ours = model(prompts)
        theirs = hf(prompts).logits.float()
    diff = (ours - theirs).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"picochat and transformers disagree: max |logit difference| {diff:.2e}")
    return diff


def time_picochat(engine: Engine, prompts: torch.Tensor, max_tokens: int) -> tuple[float, list[list[int]]]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    start = time.perf_counter()
    results = engine.generate(prompts.tolist(), params)
    elapsed = time.perf_counter() - start
    if any(len(r.tokens) != max_tokens for r in results):
        raise SystemExit("picochat stopped early; the benchmark needs exactly max_tokens per row")
    return elapsed, [r.tokens for r in results]


def time_transformers(hf, prompts: torch.Tensor, max_tokens: int) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            do_sample=False,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
        )
    elapsed = time.perf_counter() - start
    return elapsed, out[:, prompts.size(1) :].tolist()


def measure(runners: dict, prompts: torch.Tensor, runs: int) -> dict:
    """Median TTFT and total time of every runner, alternating between them each run."""
    ttft = {name: [] for name in runners}
    total = {name: [] for name in runners}
    tokens = {}
    for run in runners.values():  # warm-up (and compilation)
        run(prompts, NEW_TOKENS)
    for _ in range(runs):
        for name, run in runners.items():
            ttft[name].append(run(prompts, 1)[0])
            elapsed, tokens[name] = run(prompts, NEW_TOKENS)
            total[name].append(elapsed)
    return {
        name: (statistics.median(ttft[name]), statistics.median(total[name]), tokens[name])
        for name in runners
    }


class FirstWrite:
    """A stand-in terminal that notes when the first text of a reply arrives."""

    def __init__(self):
        self.first = None

    def write(self, text: str) -> None:
        if self.first is None and text.strip():
            self.first = time.perf_counter()

    def flush(self) -> None:
        pass


def chat_bench(model: GPT, tokenizer: Tokenizer, args) -> None:
    """`picochat chat` as a user meets it: a reply of NEW_TOKENS every --think seconds, each in a new
    conversation, eager (`--no-compile`) against the default (eager while `WarmSlots` compiles, then it)."""
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0)
    print("| chat | reply | starts at s | first text s | reply s | decode tok/s | step |")
    print("|---|---|---|---|---|---|---|")
    for name in ("eager (--no-compile)", "default (background warm-up)"):
        engine = Engine(model, tokenizer, tool=None, dtype="fp32")
        warming = WarmSlots(model, engine.dtype) if name.startswith("default") else None
        session, began, after = ChatSession(engine, params, warming=warming), time.perf_counter(), 0
        for reply in range(args.replies):
            session.clear()
            out, start = FirstWrite(), time.perf_counter()
            session.reply(f"Question {reply}: what does line {reply} of the file say?", out)
            end = time.perf_counter()
            rate = (NEW_TOKENS - 1) / (end - out.first)
            step = "compiled" if engine.compile else "eager"
            print(
                f"| {name} | {reply + 1} | {start - began:.1f} | {out.first - start:.3f} | {end - start:.2f} "
                f"| {rate:.0f} | {step} |",
                flush=True,
            )
            after += engine.compile or not warming
            if after >= 3:
                break
            time.sleep(args.think)
        if warming is not None:
            print(f"<!-- the compiled step was built and warm {warming.seconds} s after the chat began -->")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--chat", action="store_true", help="the terminal chat's replies, eager vs default")
    parser.add_argument("--replies", type=int, default=30, help="--chat: most replies per mode")
    parser.add_argument("--think", type=float, default=3.0, help="--chat: seconds between replies")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = train_tokenizer(8192)
    config = GPTConfig.from_depth(args.depth, vocab_size=tokenizer.vocab_size)
    special_ids = list(tokenizer.special_tokens.values())
    model = random_gpt(config, special_ids)
    if args.chat:
        return chat_bench(model, tokenizer, args)
    hf = to_transformers(model)
    g = torch.Generator().manual_seed(1)
    print(
        f"depth {args.depth}: n_embd {config.n_embd}, {config.n_head} heads, {config.n_layer} layers, "
        f"vocab {config.vocab_size}, {model.num_params() / 1e6:.1f}M parameters; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens, "
        f"median of {args.runs}"
    )
    diff = check_same_logits(model, hf, torch.randint(0, 8000, (2, PROMPT_LEN), generator=g))
    print(f"fp32 logits agree: max |difference| {diff:.1e}")

    print("| dtype | batch | engine | TTFT ms | total s | decode tok/s | picochat ÷ transformers |")
    print("|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
        model_d, hf_d = model.to(torch_dtype), hf.to(torch_dtype)
        compiled = Engine(model_d, tokenizer, tool=None, dtype=dtype, compile=True)
        frozen = Engine(model_d, tokenizer, tool=None, dtype=dtype, compile=True, freeze=True)
        eager = Engine(model_d, tokenizer, tool=None, dtype=dtype, compile=False)
        runners = {
            "picochat": lambda p, n, e=compiled: time_picochat(e, p, n),
            "picochat frozen": lambda p, n, e=frozen: time_picochat(e, p, n),
            "picochat eager": lambda p, n, e=eager: time_picochat(e, p, n),
            "transformers": lambda p, n, h=hf_d: time_transformers(h, p, n),
        }
        for batch in args.batches:
            prompts = torch.randint(0, 8000, (batch, PROMPT_LEN), generator=g)
            results = measure(runners, prompts, args.runs)
            same = {
                name: sum(
                    a == b
                    for ours, theirs in zip(results[name][2], results["transformers"][2])
                    for a, b in zip(ours, theirs)
                )
                for name in ("picochat", "picochat frozen", "picochat eager")
            }
            compiled_equals_eager = all(
                results[name][2] == results["picochat eager"][2] for name in ("picochat", "picochat frozen")
            )
            reference_rate = None
            for name, (ttft, total, _) in results.items():
                rate = batch * (NEW_TOKENS - 1) / (total - ttft)
                if name == "transformers":
                    ratio = ""
                else:
                    hf_ttft, hf_total, _ = results["transformers"]
                    reference_rate = batch * (NEW_TOKENS - 1) / (hf_total - hf_ttft)
                    ratio = f"{rate / reference_rate:.2f}× decode, {hf_ttft / ttft:.2f}× TTFT"
                print(
                    f"| {dtype} | {batch} | {name} | {ttft * 1e3:.1f} | {total:.2f} | {rate:.0f} | {ratio} |"
                )
            print(
                f"<!-- {dtype} batch {batch}: greedy tokens equal to transformers' at {same}/{batch * NEW_TOKENS} "
                f"positions; compiled tokens == eager tokens: {compiled_equals_eager} -->"
            )
        model.float()
        hf.float()


if __name__ == "__main__":
    main()
