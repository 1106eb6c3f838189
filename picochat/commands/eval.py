"""`picochat eval`: validation bits per byte and perplexity of a checkpoint, and the chat probes."""

from __future__ import annotations

from pathlib import Path

from picochat.errors import UserError

HELP = "Evaluate a checkpoint: bits per byte, perplexity, chat probes."


def add_parser(subparsers) -> None:
    from picochat.paths import checkpoints_dir, data_dir

    parser = subparsers.add_parser("eval", help=HELP, description=HELP)
    parser.add_argument("--checkpoint", type=Path, default=checkpoints_dir() / "base",
                        help="checkpoint or run directory (default: the base model)")  # fmt: skip
    parser.add_argument(
        "--corpus", type=Path, default=data_dir() / "default", help="corpus with a val/ split"
    )
    parser.add_argument("--batches", type=int, default=20, help="validation batches")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per batch")
    parser.add_argument("--probes", action="store_true", help="also ask the chat probes (for chat models)")
    parser.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from picochat.checkpoint import load_model
    from picochat.data.loader import validation_batches
    from picochat.data.shards import list_shards
    from picochat.evaluate import evaluate_bpb
    from picochat.runtime import compute_dtype, pick_device

    for flag, value, high in (("--batches", args.batches, 100_000), ("--batch-size", args.batch_size, 4096)):
        if not 1 <= value <= high:
            raise UserError(f"{flag} must be between 1 and {high:,}, got {value:,}")
    device = pick_device()
    model, tokenizer, meta = load_model(args.checkpoint, device)
    dtype = compute_dtype(device, args.dtype)
    seq_len = model.config.seq_len
    batches = validation_batches(list_shards(args.corpus, "val"), tokenizer, args.batch_size, seq_len,
                                 max_batches=args.batches, device=device)  # fmt: skip
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)
    result = evaluate_bpb(model, batches, token_bytes, device, dtype)
    print(f"checkpoint step {meta['step']}: validation bits per byte {result['bpb']:.4f}, loss {result['loss']:.4f} "
          f"nats/token, perplexity {result['ppl']:.2f} ({result['tokens']:,} tokens, {result['bytes']:,} bytes)")  # fmt: skip
    if args.probes:
        from picochat.chat_eval import run_chat_probes, summarize
        from picochat.engine import Engine

        probes = run_chat_probes(Engine(model, tokenizer, tool="calculator"))
        for p in probes:
            print(f"  [{'pass' if p.passed else 'fail'}] {p.question!r} -> {p.reply[:100]!r}")
        print(f"chat probes: {summarize(probes)}")
    return 0
