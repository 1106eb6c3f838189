"""The Tokenizer: round trips, special tokens, byte lengths, batch encoding, save/load and bad directories."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picochat.errors import UserError
from picochat.tokenizer import SPECIAL_TOKENS, Tokenizer
from picochat.tokenizer.storage import CONFIG_FILE, RANKS_FILE

VOCABULARY = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from or "
    "had by hot word but what some we can out other were all there when up use your how said an each she "
    "tokenizer model learns bytes merges café naïve 東京 Привет мир emoji 🙂 don't we'll they're"
)
WORDS = VOCABULARY.split()


def tiny_corpus(documents: int = 300, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English with numbers, punctuation, newlines and some non-ASCII."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(documents):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = rng.choices(WORDS, k=rng.randint(4, 12))
            if rng.random() < 0.3:
                words.append(str(rng.randint(0, 99999)))
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ",", ";"]))
        corpus.append(" ".join(sentences) + rng.choice(["\n", "\n\n", "  \n", ""]))
    return corpus


VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 200


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(tiny_corpus(), VOCAB_SIZE)


def test_vocabulary_layout(tokenizer):
    assert tokenizer.vocab_size == VOCAB_SIZE
    assert tokenizer.bos_id == VOCAB_SIZE - len(SPECIAL_TOKENS)
    assert [tokenizer.special_id(token) for token in SPECIAL_TOKENS] == list(
        range(tokenizer.bos_id, VOCAB_SIZE)
    )
    assert tokenizer.encode("a") == [ord("a")]  # bytes keep their value as id
    with pytest.raises(UserError, match="not a special token"):
        tokenizer.special_id("<|endoftext|>")


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_any_unicode_round_trips(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode_bytes(ids) == text.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(st.binary())
def test_any_bytes_round_trip(tokenizer, data):
    assert tokenizer.decode_bytes(tokenizer.encode_bytes(data)) == data


def test_decode_of_split_character_is_lossy_but_safe(tokenizer):
    ids = tokenizer.encode("東")  # three UTF-8 bytes
    assert tokenizer.decode(ids[:1]) == "\ufffd" or len(ids) == 1
    assert tokenizer.decode_bytes(ids) == "東".encode()


def test_merges_compress_the_training_text(tokenizer):
    text = "".join(tiny_corpus(20, seed=1))
    assert len(tokenizer.encode(text)) < 0.6 * len(text.encode("utf-8"))


def test_digits_are_split_into_pairs(tokenizer):
    pieces = [tokenizer.decode_bytes([i]) for i in tokenizer.encode("1234567")]
    assert all(len(piece) <= 2 for piece in pieces)


def test_plain_text_never_becomes_a_special_token(tokenizer):
    text = "hi <|bos|> there <|assistant_end|>"
    ids = tokenizer.encode(text)
    assert not set(ids) & {tokenizer.special_id(token) for token in SPECIAL_TOKENS}
    assert tokenizer.decode(ids) == text
    allowed = tokenizer.encode(text, allowed_special={"<|bos|>"})
    assert tokenizer.bos_id in allowed and tokenizer.special_id("<|assistant_end|>") not in allowed
    assert tokenizer.special_id("<|assistant_end|>") in tokenizer.encode(text, allowed_special="all")
    with pytest.raises(UserError, match="unknown tokens"):
        tokenizer.encode(text, allowed_special={"<|nope|>"})


def test_prepend_and_batch(tokenizer):
    texts = tiny_corpus(10, seed=2)
    expected = [[tokenizer.bos_id, *tokenizer.encode(text)] for text in texts]
    assert [tokenizer.encode(text, prepend=tokenizer.bos_id) for text in texts] == expected
    assert tokenizer.encode_batch(texts, prepend=tokenizer.bos_id, num_threads=2) == expected
    assert tokenizer.encode_batch(texts) == [ids[1:] for ids in expected]
    assert tokenizer.encode_batch(texts, num_threads=3) == [ids[1:] for ids in expected]
    assert tokenizer.encode_batch([]) == []


def test_token_byte_lengths(tokenizer):
    lengths = tokenizer.token_byte_lengths()
    assert lengths.shape == (tokenizer.vocab_size,)
    assert (lengths[tokenizer.bos_id :] == 0).all() and (lengths[:256] == 1).all()
    text = "".join(tiny_corpus(5, seed=3))
    assert lengths[tokenizer.encode(text)].sum() == len(text.encode("utf-8"))


def test_save_and_load_give_identical_encodings(tokenizer, tmp_path):
    directory = tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in directory.iterdir()) == [RANKS_FILE, "tokenizer.json", CONFIG_FILE]
    loaded = Tokenizer.load(directory)
    text = "".join(tiny_corpus(30, seed=4))
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.vocab_size == tokenizer.vocab_size and loaded.pattern == tokenizer.pattern


def test_default_directory_is_under_picochat_home(tokenizer, isolated_home):
    assert tokenizer.save() == isolated_home / "tokenizer"
    assert Tokenizer.load().ranks == tokenizer.ranks


def test_huggingface_export_encodes_the_same(tokenizer, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    directory = tokenizer.save(tmp_path / "tok")
    exported = HFTokenizer.from_file(str(directory / "tokenizer.json"))
    text = "".join(tiny_corpus(30, seed=5))
    assert exported.encode(text).ids == tokenizer.encode(text)
    assert exported.token_to_id("<|assistant_end|>") == tokenizer.special_id("<|assistant_end|>")


def _damage(directory, file, change):
    path = directory / file
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (RANKS_FILE, lambda text: text.replace("\n", "\n!!notbase64 7\n", 1), "line 2 is not"),
        (
            RANKS_FILE,
            lambda text: "\n".join(text.splitlines()[:-1]) + "\nYQ== 999999\n",
            "repeats token|must be 0",
        ),
        (RANKS_FILE, lambda text: text.split("\n", 1)[1], "must be 0|lacks"),
        (CONFIG_FILE, lambda text: text[:-5], "not valid JSON"),
        (CONFIG_FILE, lambda text: text.replace('"version": 1', '"version": 9'), "version 9"),
        (CONFIG_FILE, lambda text: text.replace("<|bos|>", "<|start|>"), "special tokens must be"),
        (
            CONFIG_FILE,
            lambda text: json.dumps({**json.loads(text), "pattern": "(unclosed"}),
            "does not compile",
        ),
    ],
)
def test_malformed_directory_gives_a_clear_error(tokenizer, tmp_path, file, change, message):
    directory = tokenizer.save(tmp_path / "tok")
    _damage(directory, file, change)
    with pytest.raises(UserError, match=message):
        Tokenizer.load(directory)


def test_missing_directory_and_files(tokenizer, tmp_path):
    with pytest.raises(UserError, match="picochat tokenizer train"):
        Tokenizer.load(tmp_path / "absent")
    directory = tokenizer.save(tmp_path / "tok")
    (directory / RANKS_FILE).unlink()
    with pytest.raises(UserError, match=f"{RANKS_FILE} file"):
        Tokenizer.load(directory)
