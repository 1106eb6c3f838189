"""Hugging Face shard sets through huggingface_hub, against a local stand-in for the Hub (127.0.0.1 only,
reached through HF_ENDPOINT): the file lands, a cut connection resumes, the revision is honoured and recorded,
HF_TOKEN is sent, and the shared cache serves a second corpus without a second download."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from picochat.data.corpus import fetch_shard_set, load_manifest
from picochat.data.fetch import HubFile, hub_download
from picochat.data.shards import iter_documents, list_shards, validate_shard, write_shard
from picochat.data.sources import ShardSet, Source
from picochat.errors import UserError

REPO = "test/fake-web"
COMMIT_A = "a" * 40  # what "main" points to
COMMIT_B = "b" * 40
FAST = {"retries": 2, "backoff_s": 0.01}


class FakeHub(ThreadingHTTPServer):
    """Answers HEAD and GET of /datasets/<repo>/resolve/<revision>/<path> like the Hub: X-Repo-Commit, an
    ETag, Range requests. `files[commit][path] = bytes`; `cut_first[path] = n` cuts the first n bodies."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files: dict[str, dict[str, bytes]] = {COMMIT_A: {}, COMMIT_B: {}}
        self.refs = {"main": COMMIT_A}
        self.repo = REPO
        self.cut_first: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}  # path -> answer HEAD with 503 this many times
        self.gets: list[tuple[str, str | None, str | None]] = []  # (path, Range, Authorization)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def lookup(self) -> tuple[str, bytes] | None:
        prefix = f"/datasets/{self.server.repo}/resolve/"
        if not self.path.startswith(prefix):
            return None
        revision, _, path = self.path[len(prefix) :].partition("/")
        commit = self.server.refs.get(revision, revision)
        body = self.server.files.get(commit, {}).get(path)
        return (commit, body) if body is not None else None

    def send_meta(self, commit: str, body: bytes, length: int) -> None:
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(length))

    def do_HEAD(self):
        with self.server.lock:
            failing = self.server.fail_first.get(self.path, 0)
            self.server.fail_first[self.path] = max(0, failing - 1)
        if failing:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        found = self.lookup()
        if found is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        commit, body = found
        self.send_response(200)
        self.send_meta(commit, body, len(body))
        self.end_headers()

    def do_GET(self):
        server: FakeHub = self.server
        found = self.lookup()
        with server.lock:
            server.gets.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
            cutting = server.cut_first.get(self.path, 0)
            if cutting:
                server.cut_first[self.path] = cutting - 1
        if found is None:
            self.send_error(404)
            return
        commit, body = found
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_meta(commit, body, len(body) - start)
        self.end_headers()
        if cutting:
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.shutdown()
    server.server_close()


def shard(tmp_path: Path, texts: list[str], name: str) -> bytes:
    return write_shard(tmp_path / "fixtures" / name, texts).read_bytes()


def fake_source(num_shards: int = 4) -> Source:
    origin = ShardSet(REPO, "data", "shard_{index:05d}.parquet", num_shards, val_index=num_shards - 1)
    return Source(name="fake-web", title="fake shards", licence="test", origin=origin)


def test_a_file_lands_after_a_cut_connection_resumes(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # 10 MB chunks: a test file is one chunk
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the pause before resuming
    texts = [f"web page number {i} " * 30 for i in range(400)]
    hub.files[COMMIT_A]["data/big.parquet"] = data = shard(tmp_path, texts, "big.parquet")
    path = f"/datasets/{REPO}/resolve/main/data/big.parquet"
    hub.cut_first[path] = 1
    dest, commit = hub_download(HubFile(REPO, "data/big.parquet", tmp_path / "out/big.parquet"), **FAST)
    assert dest.read_bytes() == data and commit == COMMIT_A
    ranges = [r for p, r, _ in hub.gets if p == path]
    assert ranges[0] is None and ranges[1] is not None and int(ranges[1].split("=")[1].rstrip("-")) > 0
    assert list(iter_documents([dest])) == texts
    cached = list((tmp_path / "hf_cache").rglob("big.parquet"))
    assert cached and cached[0].resolve().stat().st_ino == dest.stat().st_ino  # a link, not a second copy


def test_the_token_is_sent_and_a_missing_file_is_a_clear_error(hub, tmp_path, monkeypatch):
    hub.files[COMMIT_A]["data/a.parquet"] = shard(tmp_path, ["a"], "a.parquet")
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken")
    hub_download(HubFile(REPO, "data/a.parquet", tmp_path / "a.parquet"), **FAST)
    assert hub.gets[-1][2] == "Bearer hf_testtoken"
    with pytest.raises(UserError, match="has no file data/missing.parquet"):
        hub_download(HubFile(REPO, "data/missing.parquet", tmp_path / "m.parquet"), **FAST)
    assert not (tmp_path / "m.parquet").exists()


def test_server_errors_are_retried_then_reported_and_the_cache_serves_offline(hub, tmp_path, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # huggingface_hub's and our backoff
    flaky = f"/datasets/{REPO}/resolve/main/data/flaky.parquet"
    hub.files[COMMIT_A]["data/flaky.parquet"] = data = shard(tmp_path, ["flaky"], "flaky.parquet")
    hub.fail_first[flaky] = 3
    dest, _ = hub_download(HubFile(REPO, "data/flaky.parquet", tmp_path / "flaky.parquet"), **FAST)
    assert dest.read_bytes() == data and hub.fail_first[flaky] == 0

    hub.files[COMMIT_A]["data/down.parquet"] = shard(tmp_path, ["down"], "down.parquet")
    hub.fail_first[f"/datasets/{REPO}/resolve/main/data/down.parquet"] = 10**6
    with pytest.raises(UserError, match="after 3 tries"):
        hub_download(HubFile(REPO, "data/down.parquet", tmp_path / "down.parquet"), **FAST)
    assert not (tmp_path / "down.parquet").exists()

    hub.fail_first[flaky] = 10**6  # the Hub is down, but this file is in the cache already
    dest, _ = hub_download(HubFile(REPO, "data/flaky.parquet", tmp_path / "copy.parquet"), **FAST)
    assert dest.read_bytes() == data


def test_an_invalid_shard_is_not_kept(hub, tmp_path):
    hub.files[COMMIT_A]["data/bad.parquet"] = b"PAR1 not parquet PAR1"
    with pytest.raises(UserError, match="not a readable parquet"):
        hub_download(
            HubFile(REPO, "data/bad.parquet", tmp_path / "bad.parquet"), validate=validate_shard, **FAST
        )
    assert not (tmp_path / "bad.parquet").exists()


def test_shard_set_becomes_a_corpus_at_one_recorded_revision(hub, tmp_path):
    for commit, tag in ((COMMIT_A, "new"), (COMMIT_B, "old")):
        for i in range(4):
            hub.files[commit][f"data/shard_{i:05d}.parquet"] = shard(
                tmp_path, [f"{tag} page {i}"] * 3, f"{tag}{i}"
            )
    source = fake_source()

    directory = fetch_shard_set(
        source, num_train_shards=2, name="pinned", revision=COMMIT_B, log=print, **FAST
    )
    assert [p.name for p in list_shards(directory, "train")] == ["shard_00000.parquet", "shard_00001.parquet"]
    assert list(iter_documents(list_shards(directory, "val"))) == ["old page 3"] * 3
    manifest = load_manifest(directory)["sources"]["fake-web"]
    assert manifest["revision"] == COMMIT_B and manifest["documents"] == {"train": 6, "val": 3}
    assert not (directory / ".revision").exists()

    # more shards later: the corpus keeps its commit even though "main" points elsewhere
    directory = fetch_shard_set(source, num_train_shards=3, name="pinned", log=print, **FAST)
    assert list(iter_documents(list_shards(directory, "train")))[-3:] == ["old page 2"] * 3
    assert load_manifest(directory)["sources"]["fake-web"]["revision"] == COMMIT_B

    # a new corpus follows the source's revision ("main" here), resolved to a commit and recorded
    gets = len(hub.gets)
    directory = fetch_shard_set(source, num_train_shards=1, name="latest", log=print, **FAST)
    assert load_manifest(directory)["sources"]["fake-web"]["revision"] == COMMIT_A
    assert list(iter_documents(list_shards(directory, "val"))) == ["new page 3"] * 3
    assert len(hub.gets) == gets + 2
    with pytest.raises(UserError, match="--shards"):
        fetch_shard_set(source, num_train_shards=4, log=print)


def test_the_shared_cache_serves_a_second_corpus_without_downloading(hub, tmp_path):
    for i in range(4):
        hub.files[COMMIT_A][f"data/shard_{i:05d}.parquet"] = shard(tmp_path, [f"page {i}"], f"p{i}")
    fetch_shard_set(fake_source(), num_train_shards=2, name="one", log=print, **FAST)
    gets = len(hub.gets)
    directory = fetch_shard_set(fake_source(), num_train_shards=2, name="two", log=print, **FAST)
    assert len(hub.gets) == gets  # HEAD requests only: the files come from the cache
    assert list(iter_documents(list_shards(directory, "train"))) == ["page 0", "page 1"]


def test_the_data_fetch_command_takes_a_revision(hub, tmp_path, isolated_home, capsys):
    from picochat.cli import main
    from picochat.data.sources import SOURCES

    climbmix = SOURCES["climbmix"].origin
    hub.repo = climbmix.repo
    for index in (0, climbmix.val_index):
        hub.files[COMMIT_B][climbmix.filename(index)] = shard(tmp_path, [f"climb {index}"], f"c{index}")
    assert main(["data", "fetch", "climbmix", "--shards", "1", "--revision", COMMIT_B]) == 0
    directory = isolated_home / "data" / "climbmix"
    assert load_manifest(directory)["sources"]["climbmix"]["revision"] == COMMIT_B
    assert list(iter_documents(list_shards(directory, "train"))) == ["climb 0"]
    assert "ready in" in capsys.readouterr().out
