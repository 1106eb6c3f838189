"""How well a tokenizer compresses: UTF-8 bytes per token on each source's held-out text (more means
shorter sequences: more text for the same compute), beside GPT-2 and GPT-4's when their ranks are fetched.
"""

from dataclasses import dataclass, field
from pathlib import Path

from picochat.tokenizer.corpus import held_out_documents
from picochat.tokenizer.reference import REFERENCE_NAMES, load_reference
from picochat.tokenizer.tokenizer import Tokenizer


@dataclass
class CompressionTable:
    tokenizers: list[str]
    rows: list[tuple[str, int, list[float]]] = field(default_factory=list)  # (source, bytes, bytes/token)
    notes: list[str] = field(default_factory=list)


def bytes_per_token(encode, documents: list[str]) -> float:
    total_bytes = sum(len(document.encode("utf-8")) for document in documents)
    total_tokens = sum(len(encode(document)) for document in documents)
    return total_bytes / max(total_tokens, 1)


def evaluate_compression(
    tokenizer: Tokenizer, sources: list[str | Path], max_chars: int = 1_000_000
) -> CompressionTable:
    encoders = {"picochat": tokenizer.encode}
    table = CompressionTable(tokenizers=["picochat"])
    for name in REFERENCE_NAMES:
        reference = load_reference(name)
        if reference is None:
            table.notes.append(f"{name}: rank file absent, skipped ('picochat tokenizer fetch-reference')")
            continue
        encoders[name] = reference.encode_ordinary
        table.tokenizers.append(name)
    for source in sources:
        documents = held_out_documents(source, max_chars)
        if not documents:
            table.notes.append(f"{source}: fewer than 100 documents, so none is held out; skipped")
            continue
        size = sum(len(document.encode("utf-8")) for document in documents)
        ratios = [bytes_per_token(encode, documents) for encode in encoders.values()]
        table.rows.append((str(source), size, ratios))
    return table
