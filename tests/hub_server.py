"""A loopback Hugging Face hub for tests: a threaded HTTP server on 127.0.0.1 speaking the hub's download API.

It serves the endpoints huggingface_hub and datasets call for model and dataset repos (repo info, tree listing,
paths-info, `resolve` with HEAD, redirects to a CDN path for LFS files and byte ranges) and keeps test knobs:
drop a file's connection after N bytes, gate a repo behind a token, count requests and bytes served.

Fixtures `loopback_hub`, `hub_model_repo` (the tiny GPT-2 of `tiny_lm_dir`) and `hub_dataset_repo` (the tiny
corpus as parquet): bind them in a test module (`loopback_hub = hub_server.loopback_hub`), or use `LoopbackHub`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from huggingface_hub.utils.sha import git_hash

LFS_SUFFIXES = (".safetensors", ".parquet", ".bin", ".h5", ".msgpack", ".onnx", ".pt", ".pth", ".arrow", ".gguf")
REPO_TYPE_PLURAL = {"model": "models", "dataset": "datasets"}
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
TINY_MODEL_REPO = "test/tiny-gpt2"
TINY_DATASET_REPO = "test/tiny-text"


@dataclass(frozen=True)
class RepoFileEntry:
    """One file of a repo with the ids the hub reports for it."""

    path: str
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        """The git-lfs pointer file git stores in place of an LFS file."""
        text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
        return text.encode()

    @cached_property
    def blob_id(self) -> str:
        return git_hash(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    def tree_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return entry


@dataclass
class HubRepo:
    """A repo held by the loopback hub: files at one commit on branch `main`."""

    repo_id: str
    repo_type: str
    files: dict[str, RepoFileEntry]
    token: str | None = None

    @cached_property
    def commit(self) -> str:
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(f"{path}\0{self.files[path].blob_id}\n".encode())
        return digest.hexdigest()

    def folders(self) -> set[str]:
        out: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def folder_entry(self, path: str) -> dict[str, object]:
        oid = hashlib.sha1(f"tree:{self.commit}:{path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def entry(self, path: str) -> dict[str, object] | None:
        if path in self.files:
            return self.files[path].tree_entry()
        if path in self.folders():
            return self.folder_entry(path)
        return None


@dataclass
class RequestRecord:
    """One request the server answered."""

    method: str
    path: str
    status: int
    range: str | None
    body_bytes: int
    file: tuple[str, str, str] | None  # (repo_type, repo_id, path) when the body was a repo file


@dataclass
class _Drop:
    after: int
    times: int


@dataclass
class HubState:
    """Repos, knobs and counters shared by the handler threads."""

    repos: dict[tuple[str, str], HubRepo] = field(default_factory=dict)
    drops: dict[tuple[str, str, str], _Drop] = field(default_factory=dict)
    served: dict[tuple[str, str, str], int] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    active: int = 0  # requests being answered right now
    lock: threading.Condition = field(default_factory=threading.Condition)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being answered, so counters include every request a client has made."""
        with self.lock:
            self.lock.wait_for(lambda: self.active == 0, timeout=timeout)


class _Server(ThreadingHTTPServer):
    """A threaded server that treats clients hanging up as normal."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up (a cancelled download, a pooled connection closed) are normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackHub:
    """A hub imitation on 127.0.0.1 with a fresh port; use as a context manager or call start/stop."""

    def __init__(self) -> None:
        self.state = HubState()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> LoopbackHub:
        handler = type("BoundHubHandler", (_HubHandler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to hand to huggingface_hub (`endpoint=` or `HF_ENDPOINT`)."""
        assert self._server is not None, "the loopback hub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- content -----------------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        repo_type: str = "model",
        token: str | None = None,
    ) -> HubRepo:
        """Publish a repo; files with weight/data suffixes are served as LFS files (through the CDN path)."""
        if repo_type not in REPO_TYPE_PLURAL:
            raise ValueError(f"repo_type must be one of {sorted(REPO_TYPE_PLURAL)}, got {repo_type!r}")
        entries = {p: RepoFileEntry(p, data, p.endswith(LFS_SUFFIXES)) for p, data in files.items()}
        repo = HubRepo(repo_id, repo_type, entries, token)
        with self.state.lock:
            self.state.repos[(repo_type, repo_id)] = repo
        return repo

    def add_folder(
        self,
        repo_id: str,
        folder: Path,
        repo_type: str = "model",
        token: str | None = None,
        extra: dict[str, bytes] | None = None,
    ) -> HubRepo:
        """Publish every file under `folder` (e.g. a model written with `save_pretrained`), plus `extra` files."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_repo(repo_id, {**files, **(extra or {})}, repo_type, token)

    # --- knobs and counters ------------------------------------------------------------------------
    def drop_connection(
        self, repo_id: str, path: str, after_bytes: int, repo_type: str = "model", times: int = 1
    ) -> None:
        """Close the connection after `after_bytes` of the file's body, for the next `times` downloads."""
        with self.state.lock:
            self.state.drops[(repo_type, repo_id, path)] = _Drop(after_bytes, times)

    def bytes_served(self, repo_id: str, path: str, repo_type: str = "model") -> int:
        """Body bytes of one file sent so far (all GETs and ranges together)."""
        self.state.settle()
        with self.state.lock:
            return self.state.served.get((repo_type, repo_id, path), 0)

    def total_bytes_served(self) -> int:
        """Body bytes of all repo files sent so far."""
        self.state.settle()
        with self.state.lock:
            return sum(self.state.served.values())

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first."""
        self.state.settle()
        with self.state.lock:
            return list(self.state.requests)

    def file_gets(self, repo_id: str, path: str, repo_type: str = "model") -> list[RequestRecord]:
        """The GET requests that sent (part of) one file's body."""
        return [r for r in self.requests if r.method == "GET" and r.file == (repo_type, repo_id, path)]


def _cdn_path(repo: HubRepo, entry: RepoFileEntry) -> str:
    return f"/cdn/{repo.repo_type}/{repo.repo_id}/{entry.sha256}"


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _HubHandler(BaseHTTPRequestHandler):
    """Routes hub API, resolve and CDN requests against the shared HubState."""

    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    # --- dispatch ----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        with self.state.lock:
            self.state.active += 1
        try:
            if path.startswith("/api/"):
                self._api(method, path[len("/api/") :], query)
            elif path.startswith("/cdn/"):
                self._cdn(method, path[len("/cdn/") :])
            else:
                self._resolve(method, path.lstrip("/"))
        except _HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._send_json(e.status, {"error": e.message}, headers)
        except ConnectionError:
            self.close_connection = True
        finally:
            with self.state.lock:
                self.state.active -= 1
                self.state.lock.notify_all()

    def _find_repo(self, repo_type: str, rest: str) -> tuple[HubRepo, str]:
        """Split `rest` into a known repo id and what follows; 404 RepoNotFound when no repo matches."""
        with self.state.lock:
            candidates = [r for (t, rid), r in self.state.repos.items() if t == repo_type]
        for repo in sorted(candidates, key=lambda r: -len(r.repo_id)):
            if rest == repo.repo_id or rest.startswith(repo.repo_id + "/"):
                self._check_token(repo)
                return repo, rest[len(repo.repo_id) + 1 :]
        raise _HubError(404, "RepoNotFound", "Repository not found")

    def _check_token(self, repo: HubRepo) -> None:
        if repo.token is None:
            return
        auth = self.headers.get("Authorization")
        if auth is None:
            raise _HubError(401, "GatedRepo", "Access to this repo is restricted: you must be authenticated.")
        if auth != f"Bearer {repo.token}":
            raise _HubError(403, "GatedRepo", "Access to this repo is restricted and you are not in the list.")

    @staticmethod
    def _check_revision(repo: HubRepo, revision: str) -> None:
        if revision not in ("main", repo.commit):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    # --- /api/... ----------------------------------------------------------------------------------
    def _api(self, method: str, rest: str, query: dict[str, list[str]]) -> None:
        plural, _, rest = rest.partition("/")
        repo_type = {v: k for k, v in REPO_TYPE_PLURAL.items()}.get(plural)
        if repo_type is None:
            raise _HubError(404, None, f"unknown API route /api/{plural}")
        repo, tail = self._find_repo(repo_type, rest)
        action, _, tail = tail.partition("/")
        if action in ("", "revision") and method == "GET":
            revision = unquote(tail) if action == "revision" else "main"
            self._check_revision(repo, revision)
            self._send_json(200, self._repo_info(repo, blobs=query.get("blobs", [""])[0].lower() == "true"))
        elif action == "tree" and method == "GET":
            revision, _, sub = tail.partition("/")
            self._check_revision(repo, revision)
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            self._send_json(200, self._tree(repo, sub.strip("/"), recursive))
        elif action == "paths-info" and method == "POST":
            self._check_revision(repo, tail)
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            found = [repo.entry(p.strip("/")) for p in form.get("paths", [])]
            self._send_json(200, [e for e in found if e is not None])
        else:
            raise _HubError(404, None, f"unknown API route {action!r}")

    @staticmethod
    def _repo_info(repo: HubRepo, blobs: bool) -> dict[str, object]:
        siblings = []
        for entry in repo.files.values():
            sibling: dict[str, object] = {"rfilename": entry.path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sibling)
        return {
            "_id": repo.commit[:24],
            "id": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "gated": "auto" if repo.token else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
        }

    @staticmethod
    def _tree(repo: HubRepo, sub: str, recursive: bool) -> list[dict[str, object]]:
        if sub and sub not in repo.folders():
            raise _HubError(404, "EntryNotFound", f"{sub} does not exist on main")
        prefix = f"{sub}/" if sub else ""
        paths = sorted({*repo.files, *repo.folders()})
        out = []
        for path in paths:
            if not path.startswith(prefix) or path == sub:
                continue
            if not recursive and "/" in path[len(prefix) :]:
                continue
            entry = repo.entry(path)
            assert entry is not None
            out.append(entry)
        return out

    # --- /{repo}/resolve/{rev}/{file} and /cdn/... ---------------------------------------------------
    def _resolve(self, method: str, rest: str) -> None:
        repo_type = "model"
        if rest.startswith("datasets/"):
            repo_type, rest = "dataset", rest[len("datasets/") :]
        repo, tail = self._find_repo(repo_type, rest)
        action, _, tail = tail.partition("/")
        if action != "resolve" or method not in ("GET", "HEAD"):
            raise _HubError(404, None, f"unknown route {action!r}")
        revision, _, path = tail.partition("/")
        self._check_revision(repo, revision)
        entry = repo.files.get(path)
        if entry is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if entry.lfs:
            # A different host name than the API's, as a real CDN is: clients must not send the token there.
            port = self.server.server_address[1]
            location = f"http://localhost:{port}{quote(_cdn_path(repo, entry))}"
            headers = {
                **common,
                "Location": location,
                "X-Linked-Etag": f'"{entry.etag}"',
                "X-Linked-Size": str(entry.size),
                "ETag": f'"{entry.blob_id}"',
            }
            self._send_bytes(302, b"", headers, method)
            return
        self._send_file(method, repo, entry, {**common, "ETag": f'"{entry.etag}"'})

    def _cdn(self, method: str, rest: str) -> None:
        repo_type, _, rest = rest.partition("/")
        repo_id, _, sha256 = rest.rpartition("/")
        with self.state.lock:
            repo = self.state.repos.get((repo_type, repo_id))
        entry = next((e for e in (repo.files.values() if repo else []) if e.lfs and e.sha256 == sha256), None)
        if repo is None or entry is None:
            raise _HubError(404, None, "no such object")
        self._send_file(method, repo, entry, {"ETag": f'"{entry.sha256}"', "Accept-Ranges": "bytes"})

    def _send_file(self, method: str, repo: HubRepo, entry: RepoFileEntry, headers: dict[str, str]) -> None:
        start, end = 0, entry.size - 1
        status = 200
        raw_range = self.headers.get("Range")
        if raw_range:
            match = RANGE_RE.match(raw_range.strip())
            if match is None or match.groups() == ("", ""):
                raise _HubError(416, None, f"bad range {raw_range!r}")
            first, last = match.groups()
            if first == "":
                start = max(entry.size - int(last), 0)
            else:
                start = int(first)
                end = min(int(last), entry.size - 1) if last else entry.size - 1
            if start >= entry.size or start > end:
                self._send_bytes(416, b"", {"Content-Range": f"bytes */{entry.size}"}, method)
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{entry.size}"}
        body = entry.data[start : end + 1]
        key = (repo.repo_type, repo.repo_id, entry.path)
        cut: int | None = None
        if method == "GET":
            with self.state.lock:
                drop = self.state.drops.get(key)
                if drop is not None and drop.times > 0 and drop.after < len(body):
                    drop.times -= 1
                    cut = drop.after
        self._send_bytes(status, body, headers, method, key=key, cut=cut)

    # --- writing -----------------------------------------------------------------------------------
    def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._send_bytes(status, body, {"Content-Type": "application/json", **(headers or {})}, self.command)

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str],
        method: str,
        key: tuple[str, str, str] | None = None,
        cut: int | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        try:
            if method != "HEAD":
                stream = io.BytesIO(body if cut is None else body[:cut])
                while chunk := stream.read(16 * 1024):
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self.wfile.flush()
        finally:
            with self.state.lock:
                if key is not None:
                    self.state.served[key] = self.state.served.get(key, 0) + sent
                record = RequestRecord(method, self.path, status, self.headers.get("Range"), sent, key)
                self.state.requests.append(record)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


# --- fixtures and builders ------------------------------------------------------------------------------
@pytest.fixture
def loopback_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LoopbackHub]:
    """A running LoopbackHub with downloads allowed, HF_ENDPOINT pointing at it and HF caches under tmp_path."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(cache / "token"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "datasets" / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "datasets" / "downloads" / "extracted")
    with LoopbackHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture
def hub_model_repo(loopback_hub: LoopbackHub, tiny_lm_dir: Path) -> HubRepo:
    """The tiny GPT-2 of `tiny_lm_dir` published as TINY_MODEL_REPO on the loopback hub."""
    return loopback_hub.add_folder(TINY_MODEL_REPO, tiny_lm_dir)


@pytest.fixture
def hub_dataset_repo(loopback_hub: LoopbackHub, tiny_corpus: list[str]) -> HubRepo:
    """The tiny corpus published as TINY_DATASET_REPO (see `add_tiny_dataset`)."""
    return add_tiny_dataset(loopback_hub, TINY_DATASET_REPO, tiny_corpus)


def tiny_parquet(rows: list[dict[str, object]]) -> bytes:
    """Rows written as one parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def dataset_readme(configs: dict[str, dict[str, str]]) -> bytes:
    """A dataset card whose YAML header declares `configs` ({config: {split: data file pattern}})."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, pattern in splits.items():
            lines += [f"  - split: {split}", f"    path: {pattern}"]
    lines += ["---", "", "# A tiny dataset for tests", ""]
    return "\n".join(lines).encode()


def add_tiny_dataset(hub: LoopbackHub, repo_id: str, texts: list[str]) -> HubRepo:
    """Publish a parquet dataset with configs `default` (train in two shards, validation) and `labelled`."""
    half = len(texts) // 2
    train = [{"text": t, "id": i} for i, t in enumerate(texts)]
    files = {
        "README.md": dataset_readme(
            {
                "default": {"train": "data/train-*.parquet", "validation": "data/validation-*.parquet"},
                "labelled": {"train": "labelled/train.parquet"},
            }
        ),
        "data/train-00000-of-00002.parquet": tiny_parquet(train[:half]),
        "data/train-00001-of-00002.parquet": tiny_parquet(train[half:]),
        "data/validation-00000-of-00001.parquet": tiny_parquet([{"text": t, "id": i} for i, t in enumerate(texts[:3])]),
        "labelled/train.parquet": tiny_parquet([{"content": t, "label": i % 2} for i, t in enumerate(texts)]),
    }
    return hub.add_repo(repo_id, files, repo_type="dataset")


def add_jsonl_dataset(hub: LoopbackHub, repo_id: str, texts: list[str]) -> HubRepo:
    """Publish a card-less dataset of JSON-lines files whose splits come from the file names."""

    def jsonl(items: list[str]) -> bytes:
        return "".join(json.dumps({"text": t, "n": len(t)}) + "\n" for t in items).encode()

    return hub.add_repo(repo_id, {"train.jsonl": jsonl(texts), "test.jsonl": jsonl(texts[:2])}, repo_type="dataset")
