"""Save and load a tokenizer as a plain directory; nothing in it is ever executed (no pickle).

A tokenizer directory holds
  ranks.tiktoken          one line per token: base64 of its bytes, a space, its id (tiktoken's text format)
  tokenizer_picochat.json the split pattern and the special tokens with their ids
  tokenizer.json          the same tokenizer for Hugging Face `tokenizers` (export only; never read back)

Directories written before the rename hold `tokenizer_config.json` instead of `tokenizer_picochat.json`
(that name belongs to Hugging Face's own schema, which `picochat export` writes); they still load.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import regex

from picochat.errors import UserError

RANKS_FILE = "ranks.tiktoken"
CONFIG_FILE = "tokenizer_picochat.json"
LEGACY_CONFIG_FILE = "tokenizer_config.json"  # the name before Hugging Face's tokenizer_config.json took it
HF_FILE = "tokenizer.json"
FORMAT = "picochat-tokenizer"
FORMAT_VERSION = 1


def write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    """Write `ranks` in tiktoken's text format, in id order."""
    lines = (f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in sorted_ranks(ranks))
    path.write_text("".join(lines), encoding="ascii")


def read_ranks(path: Path) -> dict[bytes, int]:
    """Read a tiktoken ranks file, checking that the ids are 0..n-1 with no repeats."""
    if not path.is_file():
        raise UserError(f"{path} is missing: a tokenizer directory needs its {RANKS_FILE} file")
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            encoded, rank_text = line.split()
            token, rank = base64.b64decode(encoded, validate=True), int(rank_text)
        except (ValueError, binascii.Error):
            raise UserError(f"{path} line {number} is not '<base64 token> <id>': {line[:80]!r}") from None
        if token in ranks:
            raise UserError(f"{path} line {number} repeats token {token!r}, already given id {ranks[token]}")
        ranks[token] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise UserError(f"{path}: token ids must be 0..{len(ranks) - 1}, each once; the file is damaged")
    return ranks


def sorted_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, int]]:
    return sorted(ranks.items(), key=lambda token_rank: token_rank[1])


def write_config(path: Path, pattern: str, special_tokens: dict[str, int], name: str) -> None:
    config = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": name,
        "pattern": pattern,
        "special_tokens": special_tokens,
    }
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_config(path: Path) -> dict:
    """Read and check tokenizer_config.json: a compiling split pattern and integer special-token ids."""
    if not path.is_file():
        raise UserError(f"{path} is missing: a tokenizer directory needs its {CONFIG_FILE} file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-save or re-train the tokenizer") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f'{path} is not a picochat tokenizer config (expected "format": "{FORMAT}")')
    if config.get("version") != FORMAT_VERSION:
        raise UserError(f"{path} has version {config.get('version')!r}; this picochat reads {FORMAT_VERSION}")
    pattern, specials = config.get("pattern"), config.get("special_tokens")
    if not isinstance(pattern, str):
        raise UserError(f'{path} has no "pattern" string (the pre-tokenizer regex)')
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise UserError(f"{path}: the split pattern does not compile ({exc})") from None
    if not isinstance(specials, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in specials.items()
    ):
        raise UserError(f'{path}: "special_tokens" must map token strings to integer ids')
    config.setdefault("name", path.parent.name)
    return config


def save_directory(
    directory: Path,
    ranks: dict[bytes, int],
    special_tokens: dict[str, int],
    pattern: str,
    name: str,
    export_huggingface: bool = True,
) -> None:
    """Write the files of a tokenizer directory (creating it if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_ranks(directory / RANKS_FILE, ranks)
    write_config(directory / CONFIG_FILE, pattern, special_tokens, name)
    if export_huggingface:
        (directory / HF_FILE).write_text(huggingface_json(ranks, special_tokens, pattern), encoding="utf-8")


def config_file(directory: Path) -> Path:
    """The directory's picochat config: tokenizer_picochat.json, or the older tokenizer_config.json."""
    path = directory / CONFIG_FILE
    legacy = directory / LEGACY_CONFIG_FILE
    return legacy if not path.is_file() and legacy.is_file() else path


def load_directory(directory: Path) -> tuple[dict[bytes, int], dict[str, int], str, str]:
    """Read a tokenizer directory: (ranks, special tokens, split pattern, name), all checked."""
    if not directory.is_dir():
        raise UserError(
            f"no tokenizer at {directory}: train one with 'picochat tokenizer train' or pass the right directory"
        )
    ranks = read_ranks(directory / RANKS_FILE)
    config_path = config_file(directory)
    config = read_config(config_path)
    specials = config["special_tokens"]
    taken = set(range(len(ranks)))
    for token, token_id in specials.items():
        if token_id in taken:
            raise UserError(f"{config_path}: special token {token} has id {token_id}, already taken")
        taken.add(token_id)
    return ranks, specials, config["pattern"], config["name"]


# ---- Hugging Face export -------------------------------------------------------------------------------


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, which byte-level HF tokenizers expect.

    Bytes that are already printable (and not a space) stand for themselves; the others are given the
    characters from U+0100 upward, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    for offset, b in enumerate(b for b in range(256) if b not in mapping):
        mapping[b] = chr(256 + offset)
    return mapping


def merge_pair_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens that were merged into `token`.

    Re-run BPE on the token's bytes allowing only tokens learned before it; what is left is the pair.
    If that ends in more than two pieces (rare), take the split whose later half was learned first.
    """
    limit = ranks[token]
    pieces = [bytes([b]) for b in token]
    while len(pieces) > 2:
        candidates = [
            (ranks[pieces[i] + pieces[i + 1]], i)
            for i in range(len(pieces) - 1)
            if ranks.get(pieces[i] + pieces[i + 1], limit) < limit
        ]
        if not candidates:
            break
        _, i = min(candidates)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    if len(pieces) == 2:
        return pieces[0], pieces[1]
    splits = [
        (max(ranks[token[:cut]], ranks[token[cut:]]), cut)
        for cut in range(1, len(token))
        if ranks.get(token[:cut], limit) < limit and ranks.get(token[cut:], limit) < limit
    ]
    _, cut = min(splits)
    return token[:cut], token[cut:]


def huggingface_json(ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str) -> str:
    """The tokenizer as a Hugging Face `tokenizer.json` string (byte-level BPE, same split regex)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    to_char = byte_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merges = [
        tuple(as_text(piece) for piece in merge_pair_of(token, ranks))
        for token, _ in sorted_ranks(ranks)
        if len(token) > 1
    ]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([token for token, _ in sorted(special_tokens.items(), key=lambda item: item[1])])
    return hf.to_str(pretty=False)
