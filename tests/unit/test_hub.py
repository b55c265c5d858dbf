"""Hub downloads and hub datasets against the loopback hub (never the real one)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml import hub
from tests import hub_server
from tests.hub_server import HubRepo, LoopbackHub, add_jsonl_dataset

loopback_hub = hub_server.loopback_hub
hub_dataset_repo = hub_server.hub_dataset_repo
hub_model_repo = hub_server.hub_model_repo
TEXT = hub_server.TINY_DATASET_REPO

MODEL = "org/tiny-gpt2"
WEIGHTS = "model.safetensors"
ALT_FORMATS = {
    "pytorch_model.bin": b"\0" * 5000,
    "flax_model.msgpack": b"\1" * 3000,
    "onnx/model.onnx": b"\2" * 2000,
    "onnx/config.json": b"{}",
}


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stream downloads in 4 KiB chunks so a ~150 KB file reports progress (and can be cancelled) many times."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    return 4096


@pytest.fixture
def model_repo(loopback_hub: LoopbackHub, tiny_lm_dir: Path) -> HubRepo:
    """The tiny GPT-2 published with extra weight formats a safetensors load never needs."""
    return loopback_hub.add_folder(MODEL, tiny_lm_dir, extra={**ALT_FORMATS, ".gitattributes": b"*.bin lfs\n"})


def progress_messages(ctx: LocalContext) -> list[p.Progress]:
    ctx.flush()
    return [m for m in ctx.messages if isinstance(m, p.Progress)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- models ---------------------------------------------------------------------------------------
def test_model_download_reports_bytes_and_loads(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tiny_lm_dir: Path, tmp_path: Path, small_chunks: int
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = LocalContext()
    dest = hub.download_repo(MODEL, tmp_path / "model", ctx=ctx)  # endpoint from HF_ENDPOINT

    wanted = {path for path in model_repo.files if path not in ALT_FORMATS and path != ".gitattributes"}
    got = {f.relative_to(dest).as_posix() for f in dest.rglob("*") if f.is_file() and ".cache" not in f.parts}
    assert got == wanted
    for path in wanted:
        assert (dest / path).read_bytes() == model_repo.files[path].data
    for path in ALT_FORMATS:
        assert loopback_hub.file_gets(MODEL, path) == []

    reports = progress_messages(ctx)
    total = sum(model_repo.files[path].size for path in wanted)
    assert {m.unit for m in reports} == {"bytes"}
    assert {m.total for m in reports} == {total}
    done = [m.done for m in reports]
    assert done == sorted(done)
    assert done[-1] == total
    assert len(reports) > model_repo.files[WEIGHTS].size // small_chunks  # per chunk, not per file
    assert any(a.kind == "hub_download" and a.meta["commit"] == model_repo.commit for a in ctx.artifacts)

    model = AutoModelForCausalLM.from_pretrained(dest)
    reference = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    tokens = AutoTokenizer.from_pretrained(dest)("The cat sat on the mat.", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**tokens).logits, reference(**tokens).logits)


def test_second_download_fetches_nothing(loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path) -> None:
    hub.download_repo(MODEL, tmp_path / "model", endpoint=loopback_hub.url)
    served = loopback_hub.total_bytes_served()
    ctx = LocalContext()
    hub.download_repo(MODEL, tmp_path / "model", endpoint=loopback_hub.url, ctx=ctx)
    assert loopback_hub.total_bytes_served() == served
    assert progress_messages(ctx)[-1].done == progress_messages(ctx)[-1].total


def test_dropped_connection_resumes_with_a_range_request(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path, small_chunks: int
) -> None:
    size = model_repo.files[WEIGHTS].size
    cut = 12 * small_chunks  # whole chunks: bytes of an unfinished chunk are not kept by huggingface_hub
    loopback_hub.drop_connection(MODEL, WEIGHTS, after_bytes=cut)
    dest = hub.download_repo(MODEL, tmp_path / "model", endpoint=loopback_hub.url)

    assert (dest / WEIGHTS).read_bytes() == model_repo.files[WEIGHTS].data
    assert loopback_hub.bytes_served(MODEL, WEIGHTS) == size  # what arrived before the drop was not fetched again
    gets = loopback_hub.file_gets(MODEL, WEIGHTS)
    assert [g.body_bytes for g in gets] == [cut, size - cut]
    assert gets[1].range == f"bytes={cut}-"


def test_cancelled_download_continues_where_it_stopped(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path, small_chunks: int
) -> None:
    size = model_repo.files[WEIGHTS].size
    dest = tmp_path / "model"
    with pytest.raises(JobCancelled):
        hub.download_repo(MODEL, dest, endpoint=loopback_hub.url, ctx=LocalContext(cancel_after=12))
    assert not (dest / WEIGHTS).exists()
    assert [g.range for g in loopback_hub.file_gets(MODEL, WEIGHTS)] == [None]

    ctx = LocalContext()
    hub.download_repo(MODEL, dest, endpoint=loopback_hub.url, ctx=ctx)
    assert (dest / WEIGHTS).read_bytes() == model_repo.files[WEIGHTS].data
    first, resumed = loopback_hub.file_gets(MODEL, WEIGHTS)
    assert first.range is None and resumed.range is not None
    kept = int(resumed.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < kept < size
    assert resumed.body_bytes == size - kept  # only the remainder crossed the wire again
    assert progress_messages(ctx)[0].done >= kept  # progress starts from what is already on disk


def test_corrupt_partial_file_is_fetched_again(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path, small_chunks: int
) -> None:
    dest = tmp_path / "model"
    with pytest.raises(JobCancelled):
        hub.download_repo(MODEL, dest, endpoint=loopback_hub.url, ctx=LocalContext(cancel_after=12))
    (partial,) = (dest / hub.STATE_DIR / "partial").glob("*.part")
    partial.write_bytes(b"\xff" * partial.stat().st_size)

    hub.download_repo(MODEL, dest, endpoint=loopback_hub.url)
    assert (dest / WEIGHTS).read_bytes() == model_repo.files[WEIGHTS].data
    assert loopback_hub.file_gets(MODEL, WEIGHTS)[-1].range is None  # the last fetch started from scratch


def test_unknown_repo_says_not_found(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    with pytest.raises(hub.HubNotFoundError) as info:
        hub.download_repo("org/missing", tmp_path / "m", endpoint=loopback_hub.url)
    assert str(info.value) == "model 'org/missing' was not found on the hub (404)"
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_revision_names_it(loopback_hub: LoopbackHub, hub_model_repo: HubRepo, tmp_path: Path) -> None:
    repo_id = hub_model_repo.repo_id
    with pytest.raises(hub.HubNotFoundError, match=rf"^revision 'v9' of model '{repo_id}' was not found on the hub"):
        hub.download_repo(repo_id, tmp_path / "m", revision="v9", endpoint=loopback_hub.url)
    dest = hub.download_repo(repo_id, tmp_path / "m", revision=hub_model_repo.commit, endpoint=loopback_hub.url)
    assert (dest / WEIGHTS).read_bytes() == hub_model_repo.files[WEIGHTS].data


def test_gated_repo_asks_for_a_token(loopback_hub: LoopbackHub, tiny_lm_dir: Path, tmp_path: Path) -> None:
    loopback_hub.add_folder("org/gated", tiny_lm_dir, token="hf_secret")
    with pytest.raises(hub.HubAccessError, match="HF_TOKEN") as info:
        hub.download_repo("org/gated", tmp_path / "a", endpoint=loopback_hub.url)
    assert "gated" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(hub.HubAccessError, match="403"):
        hub.download_repo("org/gated", tmp_path / "b", endpoint=loopback_hub.url, token="hf_wrong")
    dest = hub.download_repo("org/gated", tmp_path / "c", endpoint=loopback_hub.url, token="hf_secret")
    assert (dest / WEIGHTS).stat().st_size == (tiny_lm_dir / WEIGHTS).stat().st_size


def test_offline_mode_refuses_before_any_request(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(loopback_hub.requests)
    with pytest.raises(hub.HubOfflineError, match=r"downloads are disabled.*HF_HUB_OFFLINE"):
        hub.download_repo(MODEL, tmp_path / "m", endpoint=loopback_hub.url)
    with pytest.raises(hub.HubOfflineError, match="HF_HUB_OFFLINE"):
        next(hub.iter_hub_dataset(TEXT, endpoint=loopback_hub.url))
    assert len(loopback_hub.requests) == before


def test_unreachable_hub_mentions_offline_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(hub.HubUnreachableError) as info:
        hub.download_repo(MODEL, tmp_path / "m", endpoint=endpoint)
    message = str(info.value)
    assert endpoint in message and "HF_HUB_OFFLINE" in message and "\n" not in message


def test_unwritable_destination_names_the_path(loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(hub.HubDiskError, match=r"cannot write '.*a-file"):
        hub.download_repo(MODEL, blocker / "model", endpoint=loopback_hub.url)


def test_not_enough_disk_space_is_refused_up_front(
    loopback_hub: LoopbackHub, model_repo: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(hub.HubDiskError, match=r"not enough free space in '.*model' for model 'org/tiny-gpt2'"):
        hub.download_repo(MODEL, tmp_path / "model", endpoint=loopback_hub.url)
    assert loopback_hub.total_bytes_served() == 0


def test_dataset_repo_download_loads_locally(
    loopback_hub: LoopbackHub, hub_dataset_repo: HubRepo, tiny_corpus: list[str], tmp_path: Path
) -> None:
    import datasets

    dest = hub.download_repo(TEXT, tmp_path / "ds", repo_type="dataset", endpoint=loopback_hub.url)
    assert all((dest / path).read_bytes() == entry.data for path, entry in hub_dataset_repo.files.items())
    local = datasets.load_dataset(str(dest), "labelled", split="train", cache_dir=str(tmp_path / "cache"))
    assert local["content"] == tiny_corpus


def test_one_sae_of_a_multi_sae_repo(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    files = {
        "README.md": b"# SAEs",
        "layer_0/cfg.json": b'{"d_in": 4}',
        "layer_0/sae_weights.safetensors": b"\3" * 300,
        "layer_0/sparsity.safetensors": b"\4" * 100,
        "layer_1/cfg.json": b'{"d_in": 4}',
        "layer_1/sae_weights.safetensors": b"\5" * 300,
        "legacy/config.json": b"{}",
        "legacy/ae.pt": b"\6" * 200,
    }
    loopback_hub.add_repo("org/saes", files)
    listing = hub.list_repo_files("org/saes", endpoint=loopback_hub.url)
    assert {f.path: f.size for f in listing.files} == {k: len(v) for k, v in files.items()}
    assert hub.find_sae_folders(f.path for f in listing.files) == ["layer_0", "layer_1", "legacy"]

    dest = hub.download_repo("org/saes", tmp_path / "sae", allow_patterns=["layer_1/*"], endpoint=loopback_hub.url)
    got = sorted(f.relative_to(dest).as_posix() for f in dest.rglob("*") if f.is_file() and ".cache" not in f.parts)
    assert got == ["layer_1/cfg.json", "layer_1/sae_weights.safetensors"]
    with pytest.raises(hub.HubNotFoundError, match="no files matching"):
        hub.download_repo("org/saes", tmp_path / "x", allow_patterns=["layer_9/*"], endpoint=loopback_hub.url)


def test_select_model_files_prefers_safetensors() -> None:
    repo = [
        ".gitattributes",
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "pytorch_model.bin",
        "tf_model.h5",
        "flax_model.msgpack",
        "onnx/decoder_model.onnx",
        "onnx/config.json",
        "tokenizer.json",
        "tokenizer.model",
        "original/consolidated.00.pth",
    ]
    assert hub.select_model_files(repo) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer.model",
    ]
    legacy = ["config.json", "pytorch_model.bin", "vocab.json"]
    assert hub.select_model_files(legacy) == legacy


# --- datasets -------------------------------------------------------------------------------------
def test_dataset_rows_stream_with_limit(
    loopback_hub: LoopbackHub, hub_dataset_repo: HubRepo, tiny_corpus: list[str]
) -> None:
    import datasets.config
    import huggingface_hub.constants

    endpoint_before = (datasets.config.HF_ENDPOINT, huggingface_hub.constants.ENDPOINT)
    ctx = LocalContext()
    rows = list(hub.iter_hub_dataset(TEXT, limit=5, endpoint=loopback_hub.url, ctx=ctx))
    assert rows == [{"text": t, "id": i} for i, t in enumerate(tiny_corpus[:5])]
    assert [m.done for m in progress_messages(ctx)] == [1, 2, 3, 4, 5]
    assert {m.unit for m in progress_messages(ctx)} == {"rows"}
    second_shard = "data/train-00001-of-00002.parquet"
    assert second_shard in hub_dataset_repo.files
    assert loopback_hub.file_gets(TEXT, second_shard, "dataset") == []
    endpoint_after = (datasets.config.HF_ENDPOINT, huggingface_hub.constants.ENDPOINT)
    assert endpoint_after == endpoint_before  # the loopback endpoint was only set while rows were read


def test_dataset_configs_splits_and_full_read(
    loopback_hub: LoopbackHub, hub_dataset_repo: HubRepo, tiny_corpus: list[str]
) -> None:
    every = list(hub.iter_hub_dataset(TEXT))  # endpoint from HF_ENDPOINT; both shards, in order
    assert [r["text"] for r in every] == tiny_corpus
    validation = list(hub.iter_hub_dataset(TEXT, split="validation"))
    assert [r["id"] for r in validation] == [0, 1, 2]
    labelled = list(hub.iter_hub_dataset(TEXT, config="labelled", limit=3))
    assert labelled == [{"content": t, "label": i % 2} for i, t in enumerate(tiny_corpus[:3])]
    with pytest.raises(ValueError, match="nope"):
        next(hub.iter_hub_dataset(TEXT, split="nope"))


def test_dataset_download_without_streaming(loopback_hub: LoopbackHub, tiny_corpus: list[str], tmp_path: Path) -> None:
    add_jsonl_dataset(loopback_hub, "org/tiny-jsonl", tiny_corpus)
    rows = list(hub.iter_hub_dataset("org/tiny-jsonl", split="test", streaming=False, cache_dir=tmp_path / "c"))
    assert rows == [{"text": t, "n": len(t)} for t in tiny_corpus[:2]]


def test_dataset_info_lists_fields(
    loopback_hub: LoopbackHub, hub_dataset_repo: HubRepo, tiny_corpus: list[str]
) -> None:
    info = hub.hub_dataset_info(TEXT, endpoint=loopback_hub.url)
    assert info.configs == ("default", "labelled")
    assert (info.config, info.splits) == ("default", ("train", "validation"))
    assert info.features == {"text": "string", "id": "int64"}
    assert info.text_columns == ["text"]

    labelled = hub.hub_dataset_info(TEXT, config="labelled", endpoint=loopback_hub.url)
    assert (labelled.splits, labelled.columns, labelled.text_columns) == (("train",), ["content", "label"], ["content"])
    with pytest.raises(hub.HubNotFoundError, match="no config 'other'; it has: default, labelled"):
        hub.hub_dataset_info(TEXT, config="other", endpoint=loopback_hub.url)

    add_jsonl_dataset(loopback_hub, "org/tiny-jsonl", tiny_corpus)
    card_less = hub.hub_dataset_info("org/tiny-jsonl", endpoint=loopback_hub.url)
    assert (card_less.configs, set(card_less.splits)) == (("default",), {"train", "test"})
    assert card_less.features == {"text": "string", "n": "int64"}


def test_missing_dataset_says_not_found(loopback_hub: LoopbackHub) -> None:
    with pytest.raises(hub.HubNotFoundError, match=r"^dataset 'org/nope' was not found on the hub \(404\)$"):
        hub.hub_dataset_info("org/nope", endpoint=loopback_hub.url)
    with pytest.raises(hub.HubNotFoundError, match=r"^dataset 'org/nope' was not found"):
        next(hub.iter_hub_dataset("org/nope", endpoint=loopback_hub.url))


def test_dataset_stream_can_be_cancelled(loopback_hub: LoopbackHub, hub_dataset_repo: HubRepo) -> None:
    rows = []
    with pytest.raises(JobCancelled):
        for row in hub.iter_hub_dataset(TEXT, ctx=LocalContext(cancel_after=3)):
            rows.append(row)
    assert len(rows) == 3
