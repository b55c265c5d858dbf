"""Hugging Face hub I/O: download model, dataset and SAE repos into local folders, and read hub datasets row by row.

Downloads go through huggingface_hub (`HfApi` for listings, `http_get` for bytes) but keep their own partial files
under `<dest>/.cache/mistudio/`, because huggingface_hub deletes a partial file when a download fails: here a dropped
connection or a cancelled job leaves the bytes in place and the next call asks only for the remainder.

huggingface_hub and datasets read `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import. These functions read them on
every call and, while they run, set the libraries' copies to match (process-wide: each job runs in its own worker).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import huggingface_hub.constants as hub_constants
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import hf_hub_url, http_get
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, filter_repo_objects
from huggingface_hub.utils.sha import git_hash, sha_fileobj

from mistudio_tui.reporting import JobContext
from mistudio_tui.units import format_bytes

try:  # huggingface_hub >= 2 ships its HTTP client as `httpx2` and re-exports it here
    from huggingface_hub.utils import httpx as _http
except ImportError:  # pragma: no cover - older huggingface_hub uses httpx itself
    import httpx as _http  # type: ignore[no-redef]  # the same client under its older name

DEFAULT_ENDPOINT = "https://huggingface.co"
STATE_DIR = Path(".cache") / "mistudio"
MANIFEST_NAME = "download.json"
REPO_TYPES = ("model", "dataset")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
# Weight formats a PyTorch load never needs once safetensors exist.
ALT_WEIGHT_SUFFIXES = (".bin", ".h5", ".msgpack", ".onnx", ".onnx_data", ".ot", ".tflite", ".pt", ".pth", ".ckpt")
EXPORT_FOLDERS = ("onnx", "openvino", "coreml")
TEXT_DTYPES = ("string", "large_string")
# Content ids and commits the hub gives are git sha1 (40) or sha256 (64) hex digests; they end up in file names.
HEX_ID = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")


# --- errors ---------------------------------------------------------------------------------------
class HubError(Exception):
    """Base of the hub errors; the message is one line meant for the user."""


class HubNotFoundError(HubError, FileNotFoundError):
    """A repo, revision, file or config does not exist on the hub."""


class HubAccessError(HubError, PermissionError):
    """The hub refused access: the repo is gated or private and needs a token (HF_TOKEN)."""


class HubOfflineError(HubError, ConnectionError):
    """Downloads are disabled by HF_HUB_OFFLINE."""


class HubUnreachableError(HubError, ConnectionError):
    """The hub could not be reached (network down, DNS, proxy, timeout)."""


class HubDiskError(HubError, OSError):
    """A local file could not be written (disk full, permissions); the message names the path."""


class HubTransferError(HubError, OSError):
    """A download failed for another reason (server error, checksum mismatch, truncated file)."""


# --- settings -------------------------------------------------------------------------------------
def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to: `endpoint`, else $HF_ENDPOINT, else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set in the environment right now."""
    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return raw.strip().upper() in TRUE_VALUES


def _describe(repo_type: str, repo_id: str) -> str:
    return f"{repo_type} '{repo_id}'"


def _offline_error(what: str) -> HubOfflineError:
    return HubOfflineError(
        f"downloads are disabled because HF_HUB_OFFLINE is set: cannot fetch {what}; unset HF_HUB_OFFLINE to download"
    )


@contextmanager
def _patched(settings: Sequence[tuple[object, str, object]]) -> Iterator[None]:
    """Set module attributes for the duration of the block, then put the old values back."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in settings]
    try:
        for obj, name, value in settings:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


@contextmanager
def _online(what: str, endpoint: str, with_datasets: bool = False) -> Iterator[None]:
    """Refuse when offline; otherwise make huggingface_hub (and datasets) agree with the environment and endpoint."""
    if offline_mode():
        raise _offline_error(what)
    settings: list[tuple[object, str, object]] = [(hub_constants, "HF_HUB_OFFLINE", False)]
    if with_datasets:
        import datasets.config

        settings += [
            (hub_constants, "ENDPOINT", endpoint),
            (hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
            (datasets.config, "HF_ENDPOINT", endpoint),
            (datasets.config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"),
            (datasets.config, "HF_HUB_OFFLINE", False),
            (datasets.config, "HF_DATASETS_OFFLINE", False),
        ]
        if endpoint != DEFAULT_ENDPOINT:
            # The dataset viewer's parquet export lives beside huggingface.co only; other endpoints have none.
            settings.append((datasets.config, "USE_PARQUET_EXPORT", False))
    with _patched(settings):
        yield


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _translate(exc: BaseException, what: str, revision: str | None, endpoint: str) -> HubError | None:
    """The user-facing error for a huggingface_hub / network failure found in `exc` or its causes, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _translate_one(current, what, revision, endpoint)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _translate_one(exc: BaseException, what: str, revision: str | None, endpoint: str) -> HubError | None:
    token_hint = "set HF_TOKEN to a token that can read it"
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return _offline_error(what)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if isinstance(exc, GatedRepoError):
            return HubAccessError(
                f"{what} is gated on the hub ({status}): accept its terms on its hub page, then {token_hint}"
            )
        if isinstance(exc, RepositoryNotFoundError):
            if status in (401, 403):
                return HubAccessError(f"{what} was not found on the hub or is private ({status}): {token_hint}")
            return HubNotFoundError(f"{what} was not found on the hub ({status})")
        if isinstance(exc, RevisionNotFoundError):
            return HubNotFoundError(f"revision '{revision}' of {what} was not found on the hub ({status})")
        if isinstance(exc, EntryNotFoundError):
            return HubNotFoundError(f"a file of {what} was not found on the hub ({status}): {_first_line(exc)}")
        if status in (401, 403):
            return HubAccessError(f"the hub refused access to {what} ({status}): {token_hint}")
        return HubTransferError(f"the hub answered {status} for {what}: {_first_line(exc)}")
    if type(exc).__name__ == "DatasetNotFoundError":  # datasets drops the hub error it came from
        return HubNotFoundError(f"{what} was not found on the hub or cannot be accessed: {_first_line(exc)}")
    if isinstance(exc, _http.TransportError):
        return HubUnreachableError(
            f"cannot reach the hub at {endpoint} ({type(exc).__name__}: {_first_line(exc) or 'no details'}); "
            "check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to work only with local files"
        )
    return None


@contextmanager
def _hub_errors(what: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Re-raise hub and network failures as HubError subclasses with one-line messages."""
    try:
        yield
    except Exception as exc:
        translated = _translate(exc, what, revision, endpoint)
        if translated is None or translated is exc:
            raise
        raise translated from exc


# --- listing and file selection ---------------------------------------------------------------------
@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo: its path, size and content id (sha256 for LFS files, git blob sha1 otherwise)."""

    path: str
    size: int
    oid: str
    lfs: bool


@dataclass(frozen=True)
class RepoListing:
    """The files of a repo at one commit."""

    repo_id: str
    repo_type: str
    commit: str
    files: tuple[HubFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, got {repo_type!r}")


def unsafe_repo_path(path: object) -> bool:
    """True unless `path` is a plain relative POSIX path that stays inside the folder it is joined to."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path or path.startswith("/"):
        return True
    if re.match(r"^[A-Za-z]:", path):  # a drive letter
        return True
    return any(part in ("", ".", "..") for part in path.split("/"))


def _list(api: HfApi, repo_id: str, repo_type: str, revision: str | None) -> RepoListing:
    what = _describe(repo_type, repo_id)
    info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
    if not info.sha:
        raise HubTransferError(f"the hub gave no commit for {what} at '{revision or 'main'}'")
    if not HEX_ID.fullmatch(str(info.sha)):
        raise HubTransferError(f"the hub gave a malformed commit id {str(info.sha)[:80]!r} for {what}; refused")
    files = []
    for entry in api.list_repo_tree(repo_id, recursive=True, revision=info.sha, repo_type=repo_type):
        if isinstance(entry, RepoFile):
            lfs = entry.lfs is not None
            oid = entry.lfs.sha256 if entry.lfs is not None else entry.blob_id
            # A hostile or broken server must not make us write outside the destination folder.
            if unsafe_repo_path(entry.path):
                raise HubTransferError(
                    f"{what} lists the unsafe file path {str(entry.path)[:200]!r} (absolute, '..', backslash or "
                    "NUL); nothing was downloaded"
                )
            if not isinstance(oid, str) or not HEX_ID.fullmatch(oid):
                raise HubTransferError(
                    f"{what} lists '{entry.path}' with a malformed content id {str(oid)[:80]!r}; nothing was downloaded"
                )
            files.append(HubFile(entry.path, int(entry.size), oid, lfs))
    return RepoListing(repo_id, repo_type, info.sha, tuple(sorted(files, key=lambda f: f.path)))


def list_repo_files(
    repo_id: str,
    repo_type: str = "model",
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> RepoListing:
    """The files (paths, sizes, content ids) of a hub repo at `revision` (default: the main branch)."""
    _check_repo_type(repo_type)
    endpoint = resolve_endpoint(endpoint)
    what = _describe(repo_type, repo_id)
    with _hub_errors(what, revision, endpoint), _online(what, endpoint):
        return _list(HfApi(endpoint=endpoint, token=token, library_name="mistudio"), repo_id, repo_type, revision)


def select_model_files(paths: Iterable[str]) -> list[str]:
    """The files loading needs: other weight formats and export folders are dropped where safetensors exist."""
    paths = list(paths)
    safetensors_dirs = {posixpath.dirname(p) for p in paths if p.endswith(".safetensors")}
    if not safetensors_dirs:
        return [p for p in paths if p != ".gitattributes"]
    keep = []
    for path in paths:
        folder = posixpath.dirname(path)
        name = posixpath.basename(path)
        if path == ".gitattributes" or ("/" in path and path.split("/", 1)[0] in EXPORT_FOLDERS):
            continue
        if path.endswith(ALT_WEIGHT_SUFFIXES) and (folder in safetensors_dirs or "" in safetensors_dirs):
            continue
        # Mistral-style repos ship one consolidated file beside the sharded transformers weights.
        if name.startswith("consolidated") and name.endswith(".safetensors"):
            siblings = [p for p in paths if posixpath.dirname(p) == folder and p.endswith(".safetensors")]
            if any(not posixpath.basename(p).startswith("consolidated") for p in siblings):
                continue
        keep.append(path)
    return keep


# Files (relative to the SAE's folder) that mark each SAE layout: SAELens, sparsify, dictionary_learning,
# Gemma Scope, Gemma Scope 2, Llama Scope (kept here without importing the torch-side format readers)
SAE_LAYOUTS = (
    ("cfg.json", "sae_weights.safetensors"),
    ("cfg.json", "sae.safetensors"),
    ("config.json", "ae.pt"),
    ("params.npz",),
    ("params.safetensors",),
    ("hyperparams.json", "checkpoints/final.safetensors"),
)


def find_sae_folders(paths: Iterable[str]) -> list[str]:
    """Folders of a repo that hold one SAE (any of SAE_LAYOUTS, or a single .pt / .pth state dict); '' is the root."""
    present = set(paths)
    folders = {posixpath.dirname(path) for path in present}
    folders |= {posixpath.dirname(folder) for folder in folders}

    def holds(folder: str, files: tuple[str, ...]) -> bool:
        return all(posixpath.join(folder, file) in present for file in files)

    state_dicts: dict[str, list[str]] = {}  # Goodfire / DeepSeek R1 style: a folder with a single .pt or .pth
    for path in present:
        if path.endswith((".pt", ".pth")):
            state_dicts.setdefault(posixpath.dirname(path), []).append(posixpath.basename(path))

    def one_state_dict(folder: str) -> bool:
        found = state_dicts.get(folder, [])
        return len(found) == 1 and found[0] != "ae.pt"

    return sorted(f for f in folders if any(holds(f, files) for files in SAE_LAYOUTS) or one_state_dict(f))


def _select(
    listing: RepoListing,
    allow_patterns: str | Sequence[str] | None,
    ignore_patterns: str | Sequence[str] | None,
) -> list[HubFile]:
    by_path = {f.path: f for f in listing.files}
    allow = allow_patterns if allow_patterns is None or isinstance(allow_patterns, str) else list(allow_patterns)
    ignore = ignore_patterns if ignore_patterns is None or isinstance(ignore_patterns, str) else list(ignore_patterns)
    chosen = list(filter_repo_objects(list(by_path), allow_patterns=allow, ignore_patterns=ignore))
    if listing.repo_type == "model":
        chosen = select_model_files(chosen)
    return [by_path[p] for p in chosen]


# --- downloading ----------------------------------------------------------------------------------
def _disk_error(path: Path, exc: OSError) -> HubDiskError:
    return HubDiskError(f"cannot write '{path}': {exc.strerror or exc}")


def _is_local_os_error(exc: OSError) -> bool:
    return exc.errno is not None and not isinstance(exc, (HfHubHTTPError, ConnectionError))


@dataclass
class _DownloadState:
    """The manifest of finished files and the partial files of a destination folder."""

    dest: Path
    repo_id: str
    repo_type: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.dest / STATE_DIR

    @property
    def manifest_path(self) -> Path:
        return self.state_dir / MANIFEST_NAME

    def load(self) -> None:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and (data.get("repo_id"), data.get("repo_type")) == (self.repo_id, self.repo_type):
            self.files = dict(data.get("files") or {})

    def is_complete(self, f: HubFile) -> bool:
        record = self.files.get(f.path)
        target = self.dest / f.path
        return bool(record and record.get("oid") == f.oid and target.is_file() and target.stat().st_size == f.size)

    def partial_path(self, f: HubFile) -> Path:
        return self.state_dir / "partial" / f"{f.oid}.part"

    def partial_size(self, f: HubFile) -> int:
        part = self.partial_path(f)
        size = part.stat().st_size if part.is_file() else 0
        return size if size <= f.size else 0

    def record(self, f: HubFile, commit: str) -> None:
        self.files[f.path] = {"oid": f.oid, "size": f.size, "commit": commit}
        self.save(commit)

    def save(self, commit: str) -> None:
        payload = {"repo_id": self.repo_id, "repo_type": self.repo_type, "commit": commit, "files": self.files}
        tmp = self.manifest_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
            os.replace(tmp, self.manifest_path)
        except OSError as exc:
            raise _disk_error(self.manifest_path, exc) from exc


class _ByteProgress:
    """Aggregates per-file byte counts into one `ctx.progress(done, total, unit="bytes")` stream."""

    def __init__(self, ctx: JobContext | None, total: int, done: int, n_files: int) -> None:
        self.ctx, self.total, self.done_before, self.n_files = ctx, total, done, n_files
        self.file_done = 0
        self.text = ""

    def start_file(self, f: HubFile, index: int, on_disk: int) -> None:
        # `on_disk` is already counted in done_before (partial files count as done at the start).
        self.done_before -= on_disk
        self.file_done = on_disk
        self.text = f"{f.path} ({index}/{self.n_files})"
        self.report()

    def advance(self, n: int) -> None:
        self.file_done += n
        self.report()
        if self.ctx is not None:
            self.ctx.check_cancelled()

    def finish_file(self, f: HubFile) -> None:
        self.done_before += f.size
        self.file_done = 0
        self.report()

    def report(self) -> None:
        if self.ctx is not None:
            self.ctx.progress(self.done_before + self.file_done, self.total, text=self.text, unit="bytes")


class _FileBar:
    """The tqdm stand-in huggingface_hub's `http_get` drives for one file; forwards byte counts."""

    def __init__(self, progress: _ByteProgress, *, initial: int = 0, **_: object) -> None:
        self._progress = progress
        progress.file_done = int(initial)

    def __enter__(self) -> _FileBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float | None = 1) -> None:
        self._progress.advance(int(n or 0))

    def close(self) -> None:
        return None


def _content_matches(path: Path, f: HubFile) -> bool:
    with path.open("rb") as fh:
        if f.lfs:
            return sha_fileobj(fh).hex() == f.oid
        return git_hash(fh.read()) == f.oid


def _fetch_file(
    f: HubFile,
    url: str,
    headers: dict[str, str],
    state: _DownloadState,
    progress: _ByteProgress,
    what: str,
) -> None:
    """Download one file into its partial file (resuming), check its checksum, move it into place."""
    part = state.partial_path(f)
    target = state.dest / f.path
    if not target.resolve().is_relative_to(state.dest.resolve()):  # e.g. through a symlink already in the folder
        raise HubTransferError(f"'{f.path}' of {what} would be written outside {state.dest}; refused")
    for attempt in range(2):
        resume = state.partial_size(f)
        if resume == 0 and part.exists():
            part.unlink()
        progress.file_done = resume
        try:
            with part.open("ab") as fh:
                http_get(
                    url,
                    fh,
                    resume_size=resume,
                    headers=headers,
                    expected_size=f.size,
                    displayed_filename=f.path,
                    tqdm_class=cast(Any, partial(_FileBar, progress)),
                )
        except OSError as exc:
            if _is_local_os_error(exc):
                raise _disk_error(part, exc) from exc
            if isinstance(exc, (HfHubHTTPError, ConnectionError)):
                raise
            raise HubTransferError(
                f"the download of '{f.path}' from {what} was cut short ({_first_line(exc)}); run it again to resume"
            ) from exc
        if _content_matches(part, f):
            break
        part.unlink()
        if attempt == 1 or resume == 0:
            raise HubTransferError(
                f"'{f.path}' from {what} does not match the hub's checksum {f.oid[:12]}; it was discarded, "
                "run the download again"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
    except OSError as exc:
        raise _disk_error(target, exc) from exc


def download_repo(
    repo_id: str,
    dest_dir: str | Path,
    repo_type: str = "model",
    revision: str | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    ctx: JobContext | None = None,
    ignore_patterns: str | Sequence[str] | None = None,
) -> Path:
    """Download a hub repo into `dest_dir` with byte progress, resuming partial files; returns `dest_dir`.

    Model repos fetch what loading needs (see `select_model_files`); `allow_patterns` / `ignore_patterns`
    (fnmatch, e.g. "blocks.8.hook_resid_pre/*" for one SAE of a repo) narrow any repo further.
    """
    _check_repo_type(repo_type)
    endpoint = resolve_endpoint(endpoint)
    what = _describe(repo_type, repo_id)
    dest = Path(dest_dir).expanduser()
    with _hub_errors(what, revision, endpoint), _online(what, endpoint):
        api = HfApi(endpoint=endpoint, token=token, library_name="mistudio")
        listing = _list(api, repo_id, repo_type, revision)
        files = _select(listing, allow_patterns, ignore_patterns)
        if not files:
            patterns = f" matching {allow_patterns!r}" if allow_patterns else ""
            raise HubNotFoundError(f"{what} has no files{patterns} to download at '{revision or 'main'}'")

        state = _DownloadState(dest, repo_id, repo_type)
        try:
            (state.state_dir / "partial").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _disk_error(dest, exc) from exc
        state.load()
        todo = [f for f in files if not state.is_complete(f)]
        on_disk = {f.path: state.partial_size(f) for f in todo}
        needed = sum(f.size - on_disk[f.path] for f in todo)
        free = shutil.disk_usage(state.state_dir).free
        if needed > free:
            raise HubDiskError(
                f"not enough free space in '{dest}' for {what}: {format_bytes(needed)} needed, "
                f"{format_bytes(free)} free"
            )

        total = sum(f.size for f in files)
        progress = _ByteProgress(ctx, total, total - needed, len(files))
        progress.report()
        headers = build_hf_headers(token=token, library_name="mistudio")
        for index, f in enumerate(todo, start=1 + len(files) - len(todo)):
            if ctx is not None:
                ctx.check_cancelled()
            progress.start_file(f, index, on_disk[f.path])
            url = hf_hub_url(repo_id, f.path, repo_type=repo_type, revision=listing.commit, endpoint=endpoint)
            _fetch_file(f, url, headers, state, progress, what)
            state.record(f, listing.commit)
            progress.finish_file(f)
        state.save(listing.commit)

    if ctx is not None:
        ctx.log(
            f"downloaded {what} at {listing.commit[:10]}: {len(files)} files, {format_bytes(total)} "
            f"({format_bytes(needed)} fetched now)"
        )
        ctx.artifact(
            "hub_download", dest, repo_id=repo_id, repo_type=repo_type, commit=listing.commit, files=len(files)
        )
    return dest


# --- datasets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubDatasetInfo:
    """What a hub dataset offers: all config names, and the splits and columns of one config."""

    repo_id: str
    configs: tuple[str, ...]
    config: str
    splits: tuple[str, ...]
    features: dict[str, str]

    @property
    def columns(self) -> list[str]:
        return list(self.features)

    @property
    def text_columns(self) -> list[str]:
        """Columns holding strings: the candidates for the text field."""
        return [name for name, dtype in self.features.items() if dtype in TEXT_DTYPES]


def _check_dataset(repo_id: str, revision: str | None, endpoint: str, token: str | bool | None) -> None:
    """Ask the hub about the repo first: `datasets` loses the status code (404, 401, gated) in its own errors."""
    HfApi(endpoint=endpoint, token=token, library_name="mistudio").repo_info(
        repo_id, repo_type="dataset", revision=revision
    )


def _feature_type(feature: Any) -> str:
    """A short type name for a `datasets` feature: 'string', 'int64', 'list<string>', 'class_label', 'struct'."""
    import datasets

    if isinstance(feature, datasets.Value):
        return str(feature.dtype)
    if isinstance(feature, datasets.ClassLabel):
        return "class_label"
    if isinstance(feature, dict):
        return "struct"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list<{_feature_type(inner)}>"
    if isinstance(feature, list) and feature:
        return f"list<{_feature_type(feature[0])}>"
    return type(feature).__name__.lower()


def hub_dataset_info(
    repo_id: str,
    config: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> HubDatasetInfo:
    """Config names of a hub dataset, and the splits and column types of `config` (default: its default one)."""
    endpoint = resolve_endpoint(endpoint)
    what = _describe("dataset", repo_id)
    with _hub_errors(what, revision, endpoint), _online(what, endpoint, with_datasets=True):
        import datasets

        _check_dataset(repo_id, revision, endpoint, token)
        configs = tuple(datasets.get_dataset_config_names(repo_id, revision=revision, token=token))
        if config is None:
            config = "default" if "default" in configs or not configs else configs[0]
        elif configs and config not in configs:
            raise HubNotFoundError(f"{what} has no config '{config}'; it has: {', '.join(configs)}")
        info = datasets.get_dataset_config_info(repo_id, config, revision=revision, token=token)
        splits = tuple(info.splits) if info.splits else ()
        features = info.features
        if features is None and splits:
            features = datasets.load_dataset(
                repo_id, config, split=splits[0], streaming=True, revision=revision, token=token
            ).features
        columns = {name: _feature_type(feat) for name, feat in (features or {}).items()}
    return HubDatasetInfo(repo_id, configs, config, splits, columns)


def iter_hub_dataset(
    repo_id: str,
    config: str | None = None,
    split: str = "train",
    streaming: bool = True,
    limit: int | None = None,
    endpoint: str | None = None,
    ctx: JobContext | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset split as dicts, streamed by default; stops after `limit` rows without reading further."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be zero or more rows, got {limit}")
    endpoint = resolve_endpoint(endpoint)
    what = _describe("dataset", repo_id)
    if limit == 0:
        return
    with _hub_errors(what, revision, endpoint), _online(what, endpoint, with_datasets=True):
        import datasets

        _check_dataset(repo_id, revision, endpoint, token)
        try:
            rows = datasets.load_dataset(
                repo_id,
                config,
                split=split,
                streaming=streaming,
                revision=revision,
                token=token,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
            )
        except ValueError as exc:
            if _translate(exc, what, revision, endpoint) is not None:
                raise
            raise ValueError(
                f"cannot read {what} (config {config or 'default'}, split {split}): {_first_line(exc)}"
            ) from exc
        label = f"{repo_id} {config or ''}/{split}".replace(" /", " ")
        for count, row in enumerate(rows, start=1):
            yield dict(row)
            if ctx is not None:
                ctx.progress(count, limit, text=label, unit="rows")
                ctx.check_cancelled()
            if limit is not None and count >= limit:
                break
