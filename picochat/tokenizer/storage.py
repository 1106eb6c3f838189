"""Save and load a tokenizer as a plain directory; nothing in it is ever executed (no pickle).

ranks.tiktoken           one line per token: base64 of its bytes, a space, its id (tiktoken's text format)
tokenizer_picochat.json  the split pattern and the special tokens with their ids
tokenizer.json           the same tokenizer for Hugging Face `tokenizers` (export only; never read back)
"""

import base64
import binascii
import json
from pathlib import Path

import regex

from picochat.atomic import atomic_directory
from picochat.errors import UserError

RANKS_FILE = "ranks.tiktoken"
CONFIG_FILE = "tokenizer_picochat.json"
LEGACY_CONFIG_FILE = "tokenizer_config.json"  # older directories' config name, now left to Hugging Face's
HF_FILE = "tokenizer.json"
TOKENIZER_FILES = (RANKS_FILE, CONFIG_FILE, HF_FILE)
FORMAT = "picochat-tokenizer"
FORMAT_VERSION = 1


def save_directory(
    directory: Path,
    ranks: dict[bytes, int],
    special_tokens: dict[str, int],
    pattern: str,
    name: str,
    export_huggingface: bool = True,
) -> None:
    """Write a tokenizer directory atomically; one that holds anything else is refused, not replaced."""
    directory = Path(directory)
    held = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    foreign = ", ".join([name for name in held if name not in TOKENIZER_FILES][:5])
    if foreign or (directory.exists() and not directory.is_dir()):
        raise UserError(
            f"{directory} is not a tokenizer directory (it holds {foreign or 'a file'}); "
            "save the tokenizer to a new or empty directory"
        )
    config = dict(format=FORMAT, version=FORMAT_VERSION, name=name, pattern=pattern)
    config_text = json.dumps({**config, "special_tokens": special_tokens}, indent=2, ensure_ascii=False)
    with atomic_directory(directory) as tmp:
        lines = (f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in by_rank(ranks))
        (tmp / RANKS_FILE).write_text("".join(lines), encoding="ascii")
        (tmp / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
        if export_huggingface:
            (tmp / HF_FILE).write_text(huggingface_json(ranks, special_tokens, pattern), encoding="utf-8")


def load_directory(directory: Path) -> tuple[dict[bytes, int], dict[str, int], str, str]:
    """Read a tokenizer directory: (ranks, special tokens, split pattern, name), all checked."""
    if not directory.is_dir():
        raise UserError(
            f"no tokenizer at {directory}: train one with 'picochat tokenizer train' or pass its directory"
        )
    ranks = read_ranks(directory / RANKS_FILE)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file() and (directory / LEGACY_CONFIG_FILE).is_file():
        config_path = directory / LEGACY_CONFIG_FILE
    config = read_config(config_path)
    taken = set(range(len(ranks)))
    for token, token_id in config["special_tokens"].items():
        if token_id in taken:
            raise UserError(f"{config_path}: special token {token} has id {token_id}, already taken")
        taken.add(token_id)
    return ranks, config["special_tokens"], config["pattern"], config["name"]


def by_rank(ranks: dict[bytes, int]) -> list[tuple[bytes, int]]:
    return sorted(ranks.items(), key=lambda item: item[1])


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


def read_config(path: Path) -> dict:
    """Read and check the picochat config: a compiling split pattern and integer special-token ids."""
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


def huggingface_json(ranks: dict[bytes, int], special_tokens: dict[str, int], pattern: str) -> str:
    """The tokenizer as a Hugging Face `tokenizer.json` string (byte-level BPE, same split regex)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers  # optional: only the export needs it
    from tokenizers import Tokenizer as HFTokenizer

    to_char = byte_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merged = [token for token, _ in by_rank(ranks) if len(token) > 1]
    merges = [tuple(as_text(piece) for piece in merge_pair_of(token, ranks)) for token in merged]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([token for token, _ in sorted(special_tokens.items(), key=lambda item: item[1])])
    return hf.to_str(pretty=False)


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, which byte-level HF tokenizers expect:
    printable bytes (but the space) stand for themselves, the others take the characters from U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    mapping = {b: chr(b) for b in printable}
    for offset, b in enumerate(b for b in range(256) if b not in mapping):
        mapping[b] = chr(256 + offset)
    return mapping


def merge_pair_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens merged into `token`: BPE on its bytes with the tokens learned before it, or where that
    leaves more than two pieces (rare), the split whose later half was learned first."""
    limit = ranks[token]
    pieces = [bytes([b]) for b in token]
    while len(pieces) > 2:
        pairs = [(ranks.get(a + b, limit), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank >= limit:
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    if len(pieces) == 2:
        return pieces[0], pieces[1]
    cut = min(
        range(1, len(token)),
        key=lambda cut: max(ranks.get(token[:cut], limit), ranks.get(token[cut:], limit)),
    )
    return token[:cut], token[cut:]
