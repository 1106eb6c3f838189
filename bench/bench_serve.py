"""Benchmark `picochat serve`: continuous batching against serving one request at a time, same engine.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_serve.py
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_serve.py --clients 1 8 --max-tokens 32

A cpu-demo-sized GPT (depth 4, vocab 4096) with random weights is saved as a checkpoint, and served twice by
`picochat serve` in two subprocesses that take turns: with `--slots 32` (the default: up to 32 clients
decoded together) and with `--slots 1` (the same engine and server, one request at a time, the others
waiting in its queue). For each number of
concurrent clients, every client sends `--requests` chat requests one after another, streaming, greedy,
`--max-tokens` new tokens each (the LM-head rows of the special tokens are zeroed, so greedy never ends a
reply early and every request generates exactly that many). The clients run in this process (asyncio +
httpx), the server in its own.

Reported: aggregate generated tokens/s (all clients' completion tokens ÷ wall time), tokens per CPU second
of the server process (less sensitive to other jobs on a shared machine), the p50/p95 time to first token
(request sent → first text chunk), and the batched ÷ one-at-a-time ratios; each row is the fastest of
`--repeats` runs, the modes alternating.
The tokenizer (vocab 4096) is trained here on the Python sources of the installed torch package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picochat.atomic import atomic_write_text  # noqa: E402
from picochat.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from picochat.model import GPT, GPTConfig  # noqa: E402
from picochat.tokenizer import Tokenizer  # noqa: E402
from picochat.tokenizer.vocab import SPECIAL_TOKENS  # noqa: E402

WORDS = "the server answers many people at once and every step of the model writes one token".split()


def train_tokenizer(vocab_size: int) -> Tokenizer:
    texts, size = [], 0
    for path in sorted(Path(torch.__file__).parent.rglob("*.py")):
        texts.append(path.read_text(errors="replace"))
        size += len(texts[-1])
        if size > 3_000_000:
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


def modes(slots: int) -> tuple[tuple[str, int], ...]:
    return (("batched", slots), ("one at a time", 1))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path, slots: int, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    server = subprocess.Popen(
        [sys.executable, "-m", "picochat", "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
        + ["--slots", str(slots), "--max-queue", "1024"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # it answers 503 while it warms up (compiles) its decode step
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server was not ready within 900 s")


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """Stream one chat completion; return (seconds to the first text, completion tokens)."""
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return (first if first is not None else time.perf_counter() - start), tokens


async def load(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    """`clients` concurrent clients, each sending `requests` requests in a row."""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def run_client(i: int) -> list[tuple[float, int]]:
            results = []
            for r in range(requests):
                prompt = " ".join(WORDS[(i + r + k) % len(WORDS)] for k in range(4 + (i + r) % 12))
                results.append(await one_request(client, url, prompt, max_tokens))
            return results

        start = time.perf_counter()
        per_client = await asyncio.gather(*(run_client(i) for i in range(clients)))
        wall = time.perf_counter() - start
    results = [r for rs in per_client for r in rs]
    ttfts = sorted(t for t, _ in results)
    tokens = sum(n for _, n in results)
    return {
        "clients": clients,
        "requests": len(results),
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_p95_s": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


async def stall(url: str, max_tokens: int) -> dict:
    """One client streams a reply; 1 s in, two others send a prompt just under the default --max-body
    (tokenized, then refused: longer than the context) and a 5 MB one (413). The stream's gaps between
    chunks while those are handled, against its gaps before; the big requests are sent from threads, so
    this process's own loop never stalls on them."""
    gaps, windows = [], []
    body = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": max_tokens}

    def big(size: int) -> int:
        time.sleep(1.0)
        start = time.perf_counter()
        text = {"messages": [{"role": "user", "content": "word " * (size // 5)}], "max_tokens": 4}
        status = httpx.post(url + "/v1/chat/completions", json=text, timeout=600).status_code
        windows.append((start, time.perf_counter()))
        return status

    async with httpx.AsyncClient(timeout=600) as client:

        async def stream() -> None:
            last = None
            async with client.stream("POST", url + "/v1/chat/completions", json=body | {"stream": True}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        now = time.perf_counter()
                        if last is not None:
                            gaps.append((now, now - last))
                        last = now

        *_, under, over = await asyncio.gather(
            stream(), asyncio.to_thread(big, 1_000_000), asyncio.to_thread(big, 5_000_000)
        )
    start, end = min(w[0] for w in windows), max(w[1] for w in windows)
    during = [g for t, g in gaps if start <= t <= end + 0.1]
    before = [g for t, g in gaps if t < start]
    return {
        "statuses": [under, over],
        "big_requests_s": round(end - start, 3),
        "max_gap_before_ms": round(1e3 * max(before, default=0), 1),
        "max_gap_during_ms": round(1e3 * max(during, default=0), 1),
        "chunks_during": len(during),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--requests", type=int, default=2, help="requests each client sends, one after another"
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode and load; the fastest is kept")
    parser.add_argument("--slots", type=int, default=32, help="slots of the batched server (the default)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the server (OMP_NUM_THREADS)"
    )
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results" / "serve.md"), help="'' to print only"
    )
    parser.add_argument("--stall", action="store_true", help="only the large-prompt stall measurement")
    args = parser.parse_args()

    began = time.time()
    tok = train_tokenizer(4096)
    config = GPTConfig.from_depth(4, vocab_size=4096, seq_len=256)
    model = random_gpt(config, [tok.special_id(name) for name in SPECIAL_TOKENS])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(Path(tmp) / "bench", model, CheckpointMeta(step=0), tokenizer=tok)
        # Both servers run from the start and take turns (an idle server costs nothing), so the machine's
        # load, which drifts on a shared machine, weighs on both modes alike.
        if args.stall:
            server, url = start_server(checkpoint, args.slots, args.threads)
            try:
                for _ in range(args.repeats):
                    print(json.dumps(asyncio.run(stall(url, args.max_tokens))), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=60)
            return
        servers = {mode: start_server(checkpoint, slots, args.threads) for mode, slots in modes(args.slots)}
        try:
            for _, url in servers.values():
                asyncio.run(load(url, 2, 1, 8))  # warm-up: first-call allocations, connection setup
            for clients in args.clients:
                for repeat in range(args.repeats):
                    for mode, slots in modes(args.slots):
                        server, url = servers[mode]
                        cpu_before = cpu_seconds(server.pid)
                        result = asyncio.run(load(url, clients, args.requests, args.max_tokens))
                        cpu = cpu_seconds(server.pid) - cpu_before
                        result = {"mode": mode, "slots": slots, "repeat": repeat, **result}
                        result["tokens_per_cpu_s"] = result["tokens"] / max(cpu, 1e-9)
                        print(json.dumps(result), flush=True)
                        rows.append(result)
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait(timeout=60)

    lines = [
        f"depth 4 (width {config.n_embd}, {config.n_head} heads), vocab 4096, random weights, fp32, server on "
        f"{args.threads or torch.get_num_threads()} torch threads, torch {torch.__version__}; {args.requests} requests per client, "
        f"{args.max_tokens} new tokens each, greedy, streaming; fastest of {args.repeats} "
        f"runs per row; total {time.time() - began:.0f} s",
        "",
        "| clients | mode | slots | requests | tokens | wall s | tokens/s | tokens per server CPU s "
        "| TTFT p50 s | TTFT p95 s | batched ÷ one at a time, tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for clients in args.clients:
        # the fastest of the repeats: on a shared machine, the run least disturbed by other jobs
        batched, alone = (
            max(
                (r for r in rows if r["clients"] == clients and r["mode"] == m),
                key=lambda r: r["tokens_per_s"],
            )
            for m in ("batched", "one at a time")
        )
        for r in (batched, alone):
            ratio = ""
            if r is batched:
                ratio = (
                    f"{batched['tokens_per_s'] / alone['tokens_per_s']:.1f}× "
                    f"({batched['tokens_per_cpu_s'] / alone['tokens_per_cpu_s']:.1f}× per CPU second)"
                )
            lines.append(
                f"| {clients} | {r['mode']} | {r['slots']} | {r['requests']} | {r['tokens']} | {r['wall_s']:.2f} "
                f"| {r['tokens_per_s']:.0f} | {r['tokens_per_cpu_s']:.0f} | {r['ttft_p50_s']:.3f} "
                f"| {r['ttft_p95_s']:.3f} | {ratio} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        previous = out.read_text() if out.exists() else ""
        marker = "<!-- bench_serve.py writes below -->"
        head = previous.split(marker)[0] if marker in previous else "# Serving: continuous batching\n\n"
        atomic_write_text(out, f"{head}{marker}\n\n{table}\n")


if __name__ == "__main__":
    main()
