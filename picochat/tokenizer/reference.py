"""GPT-2 and GPT-4 (cl100k_base) tokenizers to compare against, without network access to OpenAI.

`fetch_references` runs `npm pack js-tiktoken@1.0.21` (npm is reachable where PyPI is) and parses, never
runs, its `dist/ranks/<name>.js` files: `export default {...JSON...};` with `pat_str`, `special_tokens`
and `bpe_ranks` (lines "<anything> <first id> <base64 token> ...", ids counting up). Each is saved as a
picochat tokenizer directory under $PICOCHAT_HOME/reference_tokenizers/<name>/.
"""

import base64
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import tiktoken

from picochat import paths
from picochat.errors import UserError
from picochat.tokenizer import storage

REFERENCE_NAMES = ("gpt2", "cl100k_base")
JS_TIKTOKEN = "js-tiktoken@1.0.21"


def references_dir() -> Path:
    return paths.picochat_home() / "reference_tokenizers"


def parse_js_ranks(source: str) -> tuple[dict[bytes, int], dict[str, int], str]:
    """(ranks, special tokens, split pattern) from the text of a js-tiktoken `dist/ranks/*.js` file."""
    body = source.strip()
    prefix = "export default"
    if not body.startswith(prefix):
        raise UserError(f"unexpected js-tiktoken ranks file: it should start with {prefix!r}")
    try:
        data = json.loads(body[len(prefix) :].rstrip(";").strip())
        ranks: dict[bytes, int] = {}
        for line in data["bpe_ranks"].split("\n"):
            if not line:
                continue
            _, first_id, *tokens = line.split(" ")
            for offset, token in enumerate(tokens):
                ranks[base64.b64decode(token)] = int(first_id) + offset
        return ranks, dict(data["special_tokens"]), data["pat_str"]
    except (json.JSONDecodeError, KeyError, ValueError) as exc:
        raise UserError(f"could not parse the js-tiktoken ranks file ({exc})") from None


def fetch_references(names: tuple[str, ...] = REFERENCE_NAMES, destination: Path | None = None) -> list[Path]:
    """Download js-tiktoken with npm, convert the named rank files, return the directories written."""
    destination = destination or references_dir()
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
        archive = next(Path(tmp).glob("js-tiktoken-*.tgz"))
        written = []
        with tarfile.open(archive) as tar:
            for name in names:
                member = tar.extractfile(f"package/dist/ranks/{name}.js")
                if member is None:
                    raise UserError(f"{JS_TIKTOKEN} has no ranks for {name!r}")
                ranks, specials, pattern = parse_js_ranks(member.read().decode("utf-8"))
                directory = destination / name
                storage.save_directory(directory, ranks, specials, pattern, name, export_huggingface=False)
                written.append(directory)
    return written


def load_reference(name: str, directory: Path | None = None) -> tiktoken.Encoding | None:
    """The reference tokenizer `name` as a tiktoken Encoding, or None when it has not been fetched."""
    directory = (directory or references_dir()) / name
    if not directory.is_dir():
        return None
    ranks, specials, pattern, _ = storage.load_directory(directory)
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
