"""What the tests compare the tokenizer with: BPE training in plain Python (rustbpe's very merges), and
GPT-2's and GPT-4's tokenizers, fetched with npm from js-tiktoken and parsed, never run.
"""

import base64
import json
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import regex
import tiktoken

from picochat import paths
from picochat.errors import UserError
from picochat.tokenizer import storage
from picochat.tokenizer.vocab import BYTE_TOKENS, SPLIT_PATTERN

REFERENCE_NAMES = ("gpt2", "cl100k_base")
JS_TIKTOKEN = "js-tiktoken@1.0.21"


def merge_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `word`, scanning left to right (so "aaa" -> [X, a])."""
    merged, i = [], 0
    while i < len(word):
        match = tuple(word[i : i + 2]) == pair
        merged.append(new_id if match else word[i])
        i += 2 if match else 1
    return merged


def train_reference(texts: Iterable[str], num_merges: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Learn up to `num_merges` new tokens; return their bytes in the order learned. Ties go to the smallest
    (left id, right id), as in rustbpe; a merge that repeats a token's bytes ("a"+"bc", "ab"+"c") is no new
    token."""
    split = regex.compile(pattern)
    chunk_counts = Counter(chunk for text in texts for chunk in split.findall(text))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    token_bytes = [bytes([b]) for b in range(BYTE_TOKENS)]  # id -> bytes, including repeats
    learned: list[bytes] = []
    seen = set(token_bytes)
    while len(learned) < num_merges:
        pair_counts: Counter[tuple[int, int]] = Counter()
        for word, count in zip(words, counts):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
        words = [merge_pair(word, best, new_id) for word in words]
        if token_bytes[new_id] not in seen:
            seen.add(token_bytes[new_id])
            learned.append(token_bytes[new_id])
    return learned


def references_dir() -> Path:
    return paths.picochat_home() / "reference_tokenizers"


def parse_js_ranks(source: str) -> tuple[dict[bytes, int], dict[str, int], str]:
    """(ranks, special tokens, split pattern) from a js-tiktoken `dist/ranks/*.js` file (`export default`)."""
    body = source.strip()
    if not body.startswith("export default"):
        raise UserError("unexpected js-tiktoken ranks file: it should start with 'export default'")
    try:
        data = json.loads(body.removeprefix("export default").rstrip(";"))
        ranks: dict[bytes, int] = {}
        for line in filter(None, data["bpe_ranks"].split("\n")):
            _, first_id, *tokens = line.split(" ")
            for offset, token in enumerate(tokens):
                ranks[base64.b64decode(token)] = int(first_id) + offset
        return ranks, dict(data["special_tokens"]), data["pat_str"]
    except (json.JSONDecodeError, KeyError, ValueError) as exc:
        raise UserError(f"could not parse the js-tiktoken ranks file ({exc})") from None


def fetch_references(names: tuple[str, ...] = REFERENCE_NAMES, destination: Path | None = None) -> list[Path]:
    """Download js-tiktoken with npm, convert the named rank files, return the directories written."""
    destination, written = destination or references_dir(), []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["npm", "pack", JS_TIKTOKEN, "--silent"], cwd=tmp, check=True, capture_output=True)
        except FileNotFoundError:
            raise UserError(
                "npm is not installed; install Node.js/npm to fetch the reference tokenizers"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise UserError(
                f"'npm pack {JS_TIKTOKEN}' failed: {exc.stderr.decode(errors='replace')[-300:]}"
            ) from None
        with tarfile.open(next(Path(tmp).glob("js-tiktoken-*.tgz"))) as tar:
            for name in names:
                if (member := tar.extractfile(f"package/dist/ranks/{name}.js")) is None:
                    raise UserError(f"{JS_TIKTOKEN} has no ranks for {name!r}")
                ranks, specials, pattern = parse_js_ranks(member.read().decode("utf-8"))
                storage.save_directory(
                    destination / name, ranks, specials, pattern, name, export_huggingface=False
                )
                written.append(destination / name)
    return written


def load_reference(name: str, directory: Path | None = None) -> tiktoken.Encoding | None:
    """The reference tokenizer `name` as a tiktoken Encoding, or None when it has not been fetched."""
    directory = (directory or references_dir()) / name
    if not directory.is_dir():
        return None
    ranks, specials, pattern, _ = storage.load_directory(directory)
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
