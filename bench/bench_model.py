"""Benchmark a training step of the GPT: tokens/s, MFU, and a Hugging Face Llama peer in the same run.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
        flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_model.py --depths 4 6 --modes eager
    LD_PRELOAD=... flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_model.py --modes compile
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_model.py --allocator-check

A training step is forward + loss + backward + optimizer step + zero_grad on a (B, T) batch of random
tokens. picochat trains `GPT(GPTConfig.from_depth(depth))` with `picochat.optim.build_optimizer` (Muon +
AdamW); the peer is transformers' `LlamaForCausalLM` of the same width, depth, heads, MLP width 4×C,
vocabulary and context, untied embeddings, `attn_implementation="sdpa"`, trained with
`torch.optim.AdamW` at its defaults. Both compute the loss on the same next-token targets; bf16 runs
under CPU autocast with fp32 master weights for both.

Method: 3 warm-up steps each, then `--steps` rounds that alternate one picochat step and one peer step
(so that load from other processes hits both alike); medians. MFU = model.flops_per_token(T) × tokens/s
over the peak of a 2048³ GEMM of the same dtype, measured in the same run (best of 7 timings, taken at
the start, before each configuration and at the end). The peer's FLOPs/token are computed the same way
(6·N + 6·L·C·T): its SwiGLU MLP has three 4C×C matrices to picochat's two, so at equal dimensions it does
more work per token.

--allocator-check times picochat depth 4 bf16 eager in child processes with and without tcmalloc
preloaded, alternating, to show what the allocator does per step.

Results and their analysis: bench/results/model.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picochat.model import GPT, GPTConfig  # noqa: E402
from picochat.runtime import autocast, find_tcmalloc  # noqa: E402
from picochat.settings import TrainSettings  # noqa: E402
from picochat.training import stage_optimizer  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CPU = torch.device("cpu")


def gemm_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 7) -> float:
    """FLOP/s of the best of `repeats` (n × n) @ (n × n) products in `dtype`."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def llama_flops_per_token(model, seq_len: int) -> float:
    """6·N (every weight but the input embedding) + 6·L·C·T for attention, as for picochat."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    return 6.0 * n + 6.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


class Trainer:
    """One model, its optimizer and a fixed batch; `step()` returns (forward, backward, optimizer) seconds."""

    def __init__(self, name: str, model, optimizer, loss_fn, batch, dtype: torch.dtype, flops_per_token):
        self.name, self.model, self.optimizer, self.loss_fn = name, model, optimizer, loss_fn
        self.x, self.y = batch
        self.dtype = dtype
        self.flops_per_token = flops_per_token
        self.times: list[tuple[float, float, float]] = []

    def step(self) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        with autocast(CPU, self.dtype):
            loss = self.loss_fn(self.x, self.y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.name}: loss is {loss.item()}")
        return t1 - t0, t2 - t1, t3 - t2

    @property
    def median_step(self) -> float:
        return statistics.median(sum(t) for t in self.times)

    def median_phase(self, i: int) -> float:
        return statistics.median(t[i] for t in self.times)


def picochat_trainer(cfg: GPTConfig, batch, dtype, compile_model: bool) -> Trainer:
    """picochat as it trains: Muon + AdamW; in compile mode Muon's stacked update is compiled too."""
    torch.manual_seed(0)
    model = GPT(cfg)
    settings = TrainSettings(lr_batch_scaling=True, batch_tokens=batch[0].numel(), compile=compile_model)
    optimizer = stage_optimizer(settings, model)
    forward = torch.compile(model) if compile_model else model
    return Trainer(
        "picochat", model, optimizer, lambda x, y: forward(x, y), batch, dtype, model.flops_per_token()
    )


def gpt_adamw_trainer(cfg: GPTConfig, batch, dtype, compile_model: bool) -> Trainer:
    """The same GPT, shape and forward trained the plain PyTorch way: `torch.optim.AdamW` on everything."""
    torch.manual_seed(0)
    model = GPT(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    forward = torch.compile(model) if compile_model else model
    return Trainer(
        "gpt-adamw", model, optimizer, lambda x, y: forward(x, y), batch, dtype, model.flops_per_token()
    )


def llama_trainer(cfg: GPTConfig, batch, dtype, compile_model: bool) -> Trainer:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_ratio * cfg.n_embd,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.seq_len,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    forward = torch.compile(model) if compile_model else model

    def loss_fn(x, y):
        logits = forward(input_ids=x).logits  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    return Trainer(
        "llama", model, optimizer, loss_fn, batch, dtype, llama_flops_per_token(model, cfg.seq_len)
    )


class PlainBlock(torch.nn.Module):
    """A transformer block the way a textbook GPT-2 writes it: LayerNorm with weights and biases, one fused
    Q/K/V projection, causal attention, a GELU MLP of width 4C, biases on every linear layer."""

    def __init__(self, c: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.qkv, self.proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        self.fc, self.out = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c)

    def forward(self, x):  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)  # each (B, T, C)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(torch.nn.Module):
    """A plain PyTorch GPT of picochat's shape (width, depth, heads, vocabulary, context): learned position
    embeddings, a final LayerNorm and an LM head tied to the token embedding, as GPT-2 has them."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.wte = torch.nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = torch.nn.Embedding(cfg.seq_len, cfg.n_embd)
        self.blocks = torch.nn.ModuleList(PlainBlock(cfg.n_embd, cfg.n_head) for _ in range(cfg.n_layer))
        self.ln_f = torch.nn.LayerNorm(cfg.n_embd)

    def forward(self, idx, targets):  # idx, targets: (B, T)
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def plain_gpt_trainer(cfg: GPTConfig, batch, dtype, compile_model: bool) -> Trainer:
    """A plain PyTorch GPT-2-style model of the same shape with `torch.optim.AdamW` on every parameter."""
    torch.manual_seed(0)
    model = PlainGPT(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    forward = torch.compile(model) if compile_model else model
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    flops = 6 * n + 6 * cfg.n_layer * cfg.n_embd * cfg.seq_len  # counted as picochat's flops_per_token
    return Trainer("plain-gpt", model, optimizer, lambda x, y: forward(x, y), batch, dtype, flops)


PEERS = {"llama": llama_trainer, "gpt-adamw": gpt_adamw_trainer, "plain-gpt": plain_gpt_trainer}


def run_config(
    depth, vocab, seq_len, batch_size, dtype_name, mode, steps, warmup, with_peer, peer="llama"
) -> dict:
    cfg = GPTConfig.from_depth(depth, vocab_size=vocab, seq_len=seq_len)
    g = torch.Generator().manual_seed(depth)
    tokens = torch.randint(0, vocab, (batch_size, seq_len + 1), generator=g)
    batch = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    dtype, compiled = DTYPES[dtype_name], mode == "compile"
    trainers = [picochat_trainer(cfg, batch, dtype, compiled)]
    if with_peer:
        trainers.append(PEERS[peer](cfg, batch, dtype, compiled))
    t0 = time.perf_counter()
    for _ in range(warmup):
        for t in trainers:
            t.step()
    warmup_s = time.perf_counter() - t0
    for _ in range(steps):  # alternate, so drifting load from elsewhere hits both alike
        for t in trainers:
            t.times.append(t.step())
    tokens_per_step = batch_size * seq_len
    result = dict(
        depth=depth,
        n_embd=cfg.n_embd,
        n_head=cfg.n_head,
        vocab=vocab,
        seq_len=seq_len,
        batch=batch_size,
        dtype=dtype_name,
        mode=mode,
        warmup_s=warmup_s,
    )
    for t in trainers:
        step = t.median_step
        result[t.name] = dict(
            step_s=step,
            forward_s=t.median_phase(0),
            backward_s=t.median_phase(1),
            optimizer_s=t.median_phase(2),
            min_step_s=min(sum(x) for x in t.times),
            tokens_per_s=tokens_per_step / step,
            flops_per_token=t.flops_per_token,
            params=sum(p.numel() for p in t.model.parameters()),
        )
    if with_peer:
        result["peer"] = dict(result[trainers[1].name], name=trainers[1].name)
    return result


def allocator_check(args) -> None:
    """Child processes with and without tcmalloc, alternating; prints median step seconds of each."""
    lib = find_tcmalloc()
    if lib is None:
        raise SystemExit("tcmalloc not found (Debian: apt-get install libtcmalloc-minimal4)")
    child = [sys.executable, __file__, "--depths", "4", "--dtypes", "bf16", "--modes", "eager", "--no-peer"]
    child += ["--steps", "8", "--batch", str(args.batch), "--json-stdout"]
    base_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    results: dict[str, list[float]] = {"glibc": [], "tcmalloc": []}
    for _ in range(args.allocator_rounds):
        for name in ("tcmalloc", "glibc"):
            env = dict(base_env, LD_PRELOAD=lib) if name == "tcmalloc" else base_env
            out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1])[0]["picochat"]["step_s"])
    for name, steps in results.items():
        print(
            f"{name:9s} step medians {[round(s, 3) for s in steps]}  median {statistics.median(steps):.3f} s"
        )
    ratio = statistics.median(results["glibc"]) / statistics.median(results["tcmalloc"])
    print(f"glibc / tcmalloc step time: {ratio:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[4, 6])
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-peer", action="store_true", help="time picochat alone")
    p.add_argument(
        "--peer",
        choices=list(PEERS),
        default="llama",
        help="llama: transformers' Llama of equal dims; gpt-adamw: the same GPT with plain AdamW; "
        "plain-gpt: a GPT-2-style PyTorch model of the same shape with AdamW",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--json-stdout", action="store_true", help="print only the results as one JSON line")
    p.add_argument("--allocator-check", action="store_true")
    p.add_argument("--allocator-rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.allocator_check:
        allocator_check(args)
        return

    quiet = args.json_stdout
    say = (lambda *a, **k: None) if quiet else print
    say(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, LD_PRELOAD={os.environ.get('LD_PRELOAD')}"
    )
    peaks = {name: gemm_peak(dt) for name, dt in DTYPES.items()}
    say("GEMM 2048³ peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    results = []
    for mode in args.modes:
        for depth in args.depths:
            for dtype_name in args.dtypes:
                if not quiet:  # the peak is a best-of: re-measure between configs, keep the best
                    peaks[dtype_name] = max(peaks[dtype_name], gemm_peak(DTYPES[dtype_name]))
                r = run_config(
                    depth=depth,
                    vocab=args.vocab,
                    seq_len=args.seq_len,
                    batch_size=args.batch,
                    dtype_name=dtype_name,
                    mode=mode,
                    steps=args.steps,
                    warmup=args.warmup,
                    with_peer=not args.no_peer,
                    peer=args.peer,
                )
                results.append(r)
                say(format_row(r, peaks), flush=True)
    if not quiet:
        after = {name: gemm_peak(dt) for name, dt in DTYPES.items()}
        say("GEMM 2048³ peak after: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in after.items()))
        peaks = {k: max(peaks[k], after[k]) for k in peaks}
        print("\n| depth | C | dtype | mode | picochat tok/s | peer tok/s | ratio | fwd+bwd ratio | picochat MFU |"
              " peer MFU | picochat fwd / bwd / opt s | peer fwd / bwd / opt s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(format_table_row(r, peaks))
    if args.json:
        args.json.write_text(json.dumps(dict(peaks=peaks, results=results), indent=1))
    if quiet:
        print(json.dumps(results))


def mfu(side: dict, peak: float) -> float:
    return side["flops_per_token"] * side["tokens_per_s"] / peak


def format_row(r: dict, peaks: dict) -> str:
    pc = r["picochat"]
    line = (
        f"d{r['depth']} {r['dtype']} {r['mode']}: picochat {pc['tokens_per_s']:.0f} tok/s "
        f"(MFU {mfu(pc, peaks[r['dtype']]):.0%}, fwd {pc['forward_s']:.3f} bwd {pc['backward_s']:.3f} "
        f"opt {pc['optimizer_s']:.3f} s, warm-up {r['warmup_s']:.0f} s)"
    )
    if "peer" in r:
        pe = r["peer"]
        line += (
            f" | {pe['name']} {pe['tokens_per_s']:.0f} tok/s (MFU {mfu(pe, peaks[r['dtype']]):.0%}, "
            f"fwd {pe['forward_s']:.3f} bwd {pe['backward_s']:.3f} opt {pe['optimizer_s']:.3f} s) "
            f"| ratio {pc['tokens_per_s'] / pe['tokens_per_s']:.2f}x"
        )
    return line


def format_table_row(r: dict, peaks: dict) -> str:
    pc, pe, peak = r["picochat"], r.get("peer"), peaks[r["dtype"]]
    row = [str(r["depth"]), str(r["n_embd"]), r["dtype"], r["mode"], f"{pc['tokens_per_s']:.0f}"]
    if pe:
        model_ratio = (pe["forward_s"] + pe["backward_s"]) / (pc["forward_s"] + pc["backward_s"])
        row += [f"{pe['tokens_per_s']:.0f}", f"{pc['tokens_per_s'] / pe['tokens_per_s']:.2f}x"]
        row += [f"{model_ratio:.2f}x", f"{mfu(pc, peak):.0%}", f"{mfu(pe, peak):.0%}"]
    else:
        row += ["-", "-", "-", f"{mfu(pc, peak):.0%}", "-"]
    row += [phases(pc), phases(pe) if pe else "-"]
    return "| " + " | ".join(row) + " |"


def phases(side: dict) -> str:
    return f"{side['forward_s']:.2f} / {side['backward_s']:.2f} / {side['optimizer_s']:.2f}"


if __name__ == "__main__":
    main()
