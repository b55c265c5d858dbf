"""Activation extraction to shards, reading back, shuffled and streaming batch sources, and importing."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.activations.extract import extract_activations
from mistudio_tui.ml.activations.importing import import_activations
from mistudio_tui.ml.activations.store import ActivationStore, ShuffledActivationSource, held_out_split
from mistudio_tui.ml.activations.streaming import ActivationStream, ModelActivationSource
from mistudio_tui.ml.batches import BatchSource
from mistudio_tui.ml.data.token_store import TokenStore, TokenStoreWriter
from mistudio_tui.ml.models.hooks import run_with_capture
from mistudio_tui.ml.models.loading import LoadedModel, load_model

CTX = 16
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_lm_dir: Path) -> LoadedModel:
    return load_model(tiny_lm_dir, device="cpu")


def _write_store(folder: Path, tokenizer, texts: list[str], packed: bool, ctx: int = CTX) -> TokenStore:
    """A tokenization like the real one: packed rows starting with BOS, or one padded document per row."""
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    rows, lengths = [], []
    if packed:
        stream: list[int] = []
        for text in texts:
            stream += [*tokenizer(text)["input_ids"], eos]
        body = ctx - 1
        for i in range(0, len(stream) - body + 1, body):
            rows.append([bos, *stream[i : i + body]])
            lengths.append(ctx)
    else:
        for text in texts:
            ids = [bos, *tokenizer(text)["input_ids"]][:ctx]
            lengths.append(len(ids))
            rows.append(ids + [pad] * (ctx - len(ids)))
    writer = TokenStoreWriter(folder, ctx)
    writer.append(np.array(rows), np.array(lengths))
    writer.close({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "vocab_size": len(tokenizer)})
    return TokenStore(folder)


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel, tiny_corpus: list[str]) -> TokenStore:
    return _write_store(tmp_path_factory.mktemp("packed"), loaded.tokenizer, tiny_corpus, packed=True)


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel, tiny_corpus: list[str]) -> TokenStore:
    return _write_store(tmp_path_factory.mktemp("padded"), loaded.tokenizer, tiny_corpus[:12], packed=False, ctx=40)


def _reference(loaded: LoadedModel, tokens: TokenStore, hooks: list[str]) -> dict[str, torch.Tensor]:
    """Activations of every position of every row, computed directly: {hook: [rows, ctx, d]}."""
    ids = torch.from_numpy(np.asarray(tokens.tokens, dtype=np.int64))
    lengths = torch.from_numpy(np.asarray(tokens.lengths, dtype=np.int64))
    mask = (torch.arange(tokens.context_size)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        return run_with_capture(loaded.model, hooks, input_ids=ids, attention_mask=mask)


def _expected_exclusions(tokens: TokenStore, tokenizer) -> dict[str, int]:
    ids, lengths = np.asarray(tokens.tokens), np.asarray(tokens.lengths)
    valid = np.arange(tokens.context_size)[None, :] < lengths[:, None]
    bos = valid[:, 0] & (ids[:, 0] == tokenizer.bos_token_id)
    special = valid & np.isin(ids, tokenizer.all_special_ids)
    special[:, 0] &= ~bos
    return {"padding": int((~valid).sum()), "bos": int(bos.sum()), "special": int(special.sum())}


def _extract(loaded, tokens, out, n_tokens=10**6, ctx=None, **kw) -> dict:
    kw.setdefault("shard_tokens", 40)
    kw.setdefault("batch_size", 2)
    return extract_activations(loaded, tokens, kw.pop("hooks", HOOKS), out, n_tokens, ctx=ctx or LocalContext(), **kw)


@pytest.fixture(scope="module")
def full_set(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel, packed: TokenStore) -> Path:
    """The whole packed tokenization extracted once (40-row shards)."""
    out = tmp_path_factory.mktemp("acts")
    _extract(loaded, packed, out)
    return out


# --- extraction -----------------------------------------------------------------------------------
def test_extraction_matches_direct_forward(full_set: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    manifest = json.loads((full_set / "manifest.json").read_text())
    excluded = _expected_exclusions(packed, loaded.tokenizer)
    kept = packed.n_sequences * CTX - sum(excluded.values())
    assert manifest["n_tokens"] == kept and manifest["complete"] and manifest["tokenization_exhausted"]
    assert manifest["excluded"] == excluded and excluded["bos"] == packed.n_sequences and excluded["special"] > 0
    assert manifest["hooks"] == HOOKS and manifest["d_in"] == 32 and manifest["dtype"] == "float32"
    assert manifest["context_size"] == CTX and manifest["tokenization"] == str(packed.folder.resolve())
    sizes = [s["n_tokens"] for s in manifest["shards"]]
    assert sum(sizes) == kept and all(n == 40 for n in sizes[:-1]) and 0 < sizes[-1] <= 40
    assert [s["file"] for s in manifest["shards"]][:2] == ["shard-00000.safetensors", "shard-00001.safetensors"]

    store = ActivationStore(full_set)
    seq, pos = store.sequences().long(), store.positions().long()
    token_ids = store.token_ids()
    assert token_ids.dtype == torch.int32 and pos.max() < CTX
    torch.testing.assert_close(
        token_ids.long(), torch.from_numpy(packed.tokens[seq.numpy(), pos.numpy()].astype(np.int64))
    )
    assert not torch.isin(token_ids, torch.tensor(loaded.tokenizer.all_special_ids, dtype=torch.int32)).any()
    order = seq * CTX + pos
    assert bool((order[1:] > order[:-1]).all())  # storage order follows the tokenization
    reference = _reference(loaded, packed, HOOKS)
    for hook in HOOKS:
        torch.testing.assert_close(store.read(hook), reference[hook][seq, pos], rtol=1e-5, atol=1e-5)


def test_extraction_never_runs_layers_after_the_last_hook(
    tmp_path: Path, loaded: LoadedModel, packed: TokenStore
) -> None:
    calls: list[str] = []
    model = loaded.model
    handles = [
        model.get_submodule(name).register_forward_hook(lambda *_a, name=name: calls.append(name))
        for name in ("transformer.h.0", "transformer.h.1", "lm_head")
    ]
    try:
        _extract(loaded, packed, tmp_path / "a", n_tokens=100, hooks=["blocks.0.hook_resid_post"])
    finally:
        for handle in handles:
            handle.remove()
    assert calls and set(calls) == {"transformer.h.0"}


def test_padding_is_excluded_and_counted(tmp_path: Path, loaded: LoadedModel, padded: TokenStore) -> None:
    manifest = _extract(loaded, padded, tmp_path / "acts", hooks=["blocks.1.hook_resid_post"])
    expected = _expected_exclusions(padded, loaded.tokenizer)
    assert expected["padding"] > 0 and manifest["excluded"] == expected
    store = ActivationStore(tmp_path / "acts")
    seq, pos = store.sequences().numpy(), store.positions().numpy()
    assert (pos < padded.lengths[seq]).all() and (pos > 0).all()
    reference = _reference(loaded, padded, ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"]
    torch.testing.assert_close(store.read("blocks.1.hook_resid_post"), reference[seq, pos], rtol=1e-5, atol=1e-5)


def test_exclusions_can_be_turned_off(tmp_path: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    manifest = _extract(loaded, packed, tmp_path / "a", exclude_bos=False, exclude_special=False)
    assert manifest["n_tokens"] == packed.n_sequences * CTX
    assert manifest["excluded"] == {"padding": 0, "bos": 0, "special": 0}
    store = ActivationStore(tmp_path / "a")
    assert int((store.positions() == 0).sum()) == packed.n_sequences


def test_token_cap_and_store_dtype(tmp_path: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    ctx = LocalContext()
    manifest = _extract(loaded, packed, tmp_path / "a", n_tokens=55, store_dtype="bfloat16", ctx=ctx)
    assert manifest["n_tokens"] == 55 and [s["n_tokens"] for s in manifest["shards"]] == [40, 15]
    assert manifest["complete"] and not manifest["tokenization_exhausted"] and manifest["dtype"] == "bfloat16"
    store = ActivationStore(tmp_path / "a")
    assert store.read(HOOKS[0]).dtype == torch.bfloat16 and store.n_tokens == 55
    progress = [m for m in ctx.messages if type(m).__name__ == "Progress"]
    assert progress and progress[-1].done == 55 and progress[-1].total == 55 and progress[-1].unit == "tokens"
    assert len(ctx.artifacts) == 2 and ctx.artifacts[0].kind == "activation_shard"


def test_resume_after_cancel_equals_an_uninterrupted_run(
    tmp_path: Path, full_set: Path, loaded: LoadedModel, packed: TokenStore
) -> None:
    out = tmp_path / "resumed"
    with pytest.raises(JobCancelled):
        _extract(loaded, packed, out, ctx=LocalContext(cancel_after=3))
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"] and 0 < len(partial["shards"]) < len(
        json.loads((full_set / "manifest.json").read_text())["shards"]
    )
    # leftovers of a crash in the middle of writing the next shard
    (out / "shard-00099.safetensors").write_bytes(b"garbage")
    (out / "shard-00005.safetensors.tmp").write_bytes(b"garbage")
    manifest = _extract(loaded, packed, out)
    assert not (out / "shard-00099.safetensors").exists() and not list(out.glob("*.tmp"))
    reference = json.loads((full_set / "manifest.json").read_text())
    for key in ("n_tokens", "excluded", "cursor", "d_in_by_hook"):
        assert manifest[key] == reference[key]
    assert [s["n_tokens"] for s in manifest["shards"]] == [s["n_tokens"] for s in reference["shards"]]
    a, b = ActivationStore(out), ActivationStore(full_set)
    for hook in HOOKS:
        assert torch.equal(a.read(hook), b.read(hook))
    assert torch.equal(a.sequences(), b.sequences()) and torch.equal(a.positions(), b.positions())


def test_rerun_continues_or_refuses(tmp_path: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    out = tmp_path / "a"
    first = _extract(loaded, packed, out, n_tokens=50)
    again = _extract(loaded, packed, out, n_tokens=50)
    assert again["shards"] == first["shards"]
    longer = _extract(loaded, packed, out, n_tokens=130)
    assert longer["n_tokens"] == 130 and [s["n_tokens"] for s in longer["shards"]] == [40, 10, 40, 40]
    direct = _extract(loaded, packed, tmp_path / "b", n_tokens=130)
    assert longer["excluded"] == direct["excluded"] and longer["cursor"] == direct["cursor"]
    assert torch.equal(ActivationStore(out).read(HOOKS[1]), ActivationStore(tmp_path / "b").read(HOOKS[1]))
    with pytest.raises(ValueError, match=r"other settings.*hooks"):
        _extract(loaded, packed, out, hooks=["blocks.0.hook_resid_pre"])


def test_bad_requests_are_clear_errors(tmp_path: Path, loaded: LoadedModel, packed: TokenStore, tiny_corpus) -> None:
    with pytest.raises(ValueError, match="n_tokens"):
        _extract(loaded, packed, tmp_path / "a", n_tokens=0)
    with pytest.raises(ValueError, match=r"blocks\.\{0\.\.1\}"):
        _extract(loaded, packed, tmp_path / "a", hooks=["blocks.5.hook_resid_post"])
    with pytest.raises(ValueError, match="reserved"):
        _extract(loaded, packed, tmp_path / "a", hooks=["position"])
    wide = _write_store(tmp_path / "wide", loaded.tokenizer, tiny_corpus, packed=True, ctx=128)
    with pytest.raises(ValueError, match="at most 64 positions"):
        _extract(loaded, wide, tmp_path / "a")
    with pytest.raises(ValueError, match=r"expected \[batch, positions, d\]"):
        _extract(loaded, packed, tmp_path / "c", hooks=["transformer.wpe"])  # position embeddings: [1, ctx, d]
    writer = TokenStoreWriter(tmp_path / "big-ids", 8)
    writer.append(np.full((2, 8), 5000), np.full(2, 8))
    writer.close({})
    with pytest.raises(ValueError, match="token id 5000"):
        _extract(loaded, TokenStore(tmp_path / "big-ids"), tmp_path / "b")


# --- reading back -----------------------------------------------------------------------------------
def test_store_reads_ranges_across_shards(full_set: Path) -> None:
    store = ActivationStore(full_set)
    everything = store.read(HOOKS[0])
    assert everything.shape == (store.n_tokens, 32) and store.d_in == 32 and store.has_token_ids
    torch.testing.assert_close(store.read(HOOKS[0], 35, 85), everything[35:85])
    torch.testing.assert_close(store.read_shard(HOOKS[0], 1), everything[40:80])
    assert torch.equal(torch.cat(list(store.iter_batches(HOOKS[0], 33))), everything)
    with pytest.raises(ValueError, match=r"no hook 'blocks\.9\.hook_x'"):
        store.read("blocks.9.hook_x")
    store.verify()


def test_missing_or_corrupt_shards_name_the_file(tmp_path: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    out = tmp_path / "a"
    _extract(loaded, packed, out, n_tokens=90)
    shard = out / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=rf"{shard}.*corrupt"):
        ActivationStore(out)
    shard.write_bytes(b"\xff" * len(data))  # same size, unreadable header
    store = ActivationStore(out)
    with pytest.raises(ValueError, match=rf"{shard}.*corrupt"):
        store.read(HOOKS[0], 0, 90)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(shard))):
        ActivationStore(out)
    with pytest.raises(FileNotFoundError, match=r"manifest\.json is missing"):
        ActivationStore(tmp_path)


def _keys(rows: torch.Tensor) -> Counter:
    """The multiset of rows (the tiny corpus repeats, so identical rows occur)."""
    return Counter(row.numpy().tobytes() for row in rows.float())


def _draw(source, sizes: list[int]) -> torch.Tensor:
    return torch.cat([source.next_batch(n) for n in sizes])


def test_shuffled_source_covers_each_row_once_per_epoch(full_set: Path) -> None:
    store = ActivationStore(full_set)
    source = ShuffledActivationSource(store, HOOKS[0], seed=1, buffer_shards=2)
    assert isinstance(source, BatchSource) and source.d_in == 32
    rows = store.read(HOOKS[0])
    n = store.n_tokens
    sizes = [7] * (n // 7) + ([n % 7] if n % 7 else [])
    epoch = _draw(source, sizes)
    assert _keys(epoch) == _keys(rows)
    assert not torch.equal(epoch, rows)
    shard_of: dict[bytes, set[int]] = {}
    for i, row in enumerate(rows):
        shard_of.setdefault(row.numpy().tobytes(), set()).add(i // 40)
    first_window = [shard_of[row.numpy().tobytes()] for row in epoch[:80]]
    assert len(set().union(*(s for s in first_window if len(s) == 1))) == 2  # mixed across two shards
    assert source.epoch == 1
    second = _draw(source, sizes)
    assert _keys(second) == _keys(rows) and not torch.equal(second, epoch)
    assert source._data is not None and len(source._data) <= 2 * 40  # memory holds one window


def test_shuffled_source_is_deterministic_and_resumable(full_set: Path) -> None:
    store = ActivationStore(full_set)
    a = ShuffledActivationSource(store, HOOKS[1], seed=5, buffer_shards=2)
    b = ShuffledActivationSource(store, HOOKS[1], seed=5, buffer_shards=2)
    c = ShuffledActivationSource(store, HOOKS[1], seed=6, buffer_shards=2)
    no_prefetch = ShuffledActivationSource(store, HOOKS[1], seed=5, buffer_shards=2, prefetch=False)
    first = _draw(a, [50, 50, 150])
    assert torch.equal(first, _draw(no_prefetch, [50, 50, 150]))  # prefetching changes nothing served
    assert torch.equal(first[:100], _draw(b, [50, 50]))
    assert not torch.equal(_draw(b, [50]), _draw(c, [150])[100:])
    for skip in (13, 300):  # mid-window, and past the first epoch
        a = ShuffledActivationSource(store, HOOKS[1], seed=5, buffer_shards=2)
        a.next_batch(skip)
        state = json.loads(json.dumps(a.state_dict()))
        expected = _draw(a, [33, 61])
        resumed = ShuffledActivationSource(store, HOOKS[1], seed=0, buffer_shards=2)
        resumed.load_state_dict(state)
        assert torch.equal(_draw(resumed, [33, 61]), expected)


def test_held_out_split(full_set: Path) -> None:
    store = ActivationStore(full_set)
    (a, b), (c, d) = held_out_split(store, fraction=0.1)
    assert a == 0 and b == c and d == store.n_tokens and d - c == round(store.n_tokens * 0.1)
    train, held = held_out_split(store, shards=1)
    assert held == (store.offsets[-2], store.n_tokens) and train == (0, store.offsets[-2])
    source = ShuffledActivationSource(store, HOOKS[0], seed=0, rows=(c, d))
    assert _keys(source.next_batch(d - c)) == _keys(store.read(HOOKS[0], c, d))
    with pytest.raises(ValueError, match="fraction"):
        held_out_split(store, fraction=1.5)


# --- streaming ----------------------------------------------------------------------------------------
def test_model_source_serves_the_extracted_rows(full_set: Path, loaded: LoadedModel, packed: TokenStore) -> None:
    store = ActivationStore(full_set)
    n = store.n_tokens
    source = ModelActivationSource(loaded, packed, HOOKS[0], seed=3, buffer_tokens=n, batch_size=4)
    assert isinstance(source, BatchSource) and source.d_in == 32
    served = source.next_batch(n)
    expected = store.read(HOOKS[0])
    key = torch.randn(32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(served[torch.argsort(served @ key)], expected[torch.argsort(expected @ key)])
    assert not torch.allclose(served, expected)  # shuffled


def test_model_source_resumes_exactly(loaded: LoadedModel, packed: TokenStore) -> None:
    def make() -> ModelActivationSource:
        return ModelActivationSource(loaded, packed, HOOKS[1], seed=9, buffer_tokens=64, batch_size=3)

    other_seed = ModelActivationSource(loaded, packed, HOOKS[1], seed=10, buffer_tokens=64, batch_size=3)
    assert not torch.equal(make().next_batch(10), other_seed.next_batch(10))
    for skip in (20, 150):
        a = make()
        a.next_batch(skip)
        state = json.loads(json.dumps(a.state_dict()))
        expected = _draw(a, [30, 70])
        b = make()
        b.load_state_dict(state)
        torch.testing.assert_close(_draw(b, [30, 70]), expected)


def test_one_forward_pass_feeds_every_hook(loaded: LoadedModel, packed: TokenStore) -> None:
    stream = ActivationStream(loaded, packed, HOOKS, seed=2, buffer_tokens=64, batch_size=4)
    first, second = stream.source(HOOKS[0]), stream.source(HOOKS[1])
    assert stream.source(HOOKS[0]) is first
    batches_a = [first.next_batch(32), first.next_batch(32)]
    forwards = stream.forward_batches
    batches_b = [second.next_batch(32), second.next_batch(32)]
    assert stream.forward_batches == forwards  # the second hook was served from the same passes
    single = ModelActivationSource(loaded, packed, HOOKS[1], seed=2, buffer_tokens=64, batch_size=4)
    torch.testing.assert_close(torch.cat(batches_b), _draw(single, [32, 32]))
    assert not torch.allclose(batches_a[0], batches_b[0])
    _draw(first, [64, 64])  # first has used windows 1 and 2 while second still needs window 1
    with pytest.raises(ValueError, match="windows apart"):
        first.next_batch(1)
    _draw(second, [64, 64])
    first.next_batch(1)
    assert len(stream._windows) <= 2


# --- importing ----------------------------------------------------------------------------------------
def test_import_single_file(tmp_path: Path) -> None:
    data = torch.randn(100, 24)
    source = tmp_path / "acts.safetensors"
    save_file({"activations": data}, str(source))
    manifest = import_activations(source, tmp_path / "set")
    assert manifest["n_tokens"] == 100 and manifest["d_in"] == 24 and not manifest["has_token_ids"]
    assert manifest["hooks"] == ["activations"] and manifest["link"] == "hardlink"
    assert os.stat(source).st_ino == os.stat(tmp_path / "set" / "shard-00000.safetensors").st_ino  # not copied
    store = ActivationStore(tmp_path / "set")
    assert torch.equal(store.read("activations"), data)
    with pytest.raises(ValueError, match="without token ids"):
        store.token_ids()
    batch = ShuffledActivationSource(store, "activations", seed=0).next_batch(100)
    assert sorted(batch.sum(1).tolist()) == sorted(data.sum(1).tolist())
    with pytest.raises(ValueError, match="already holds"):
        import_activations(source, tmp_path / "set")


def test_import_folder_with_key_and_copy(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    parts = [torch.randn(30, 8), torch.randn(20, 8)]
    for i, part in enumerate(parts):
        save_file({"x": part, "tokens": torch.arange(len(part))}, str(folder / f"part{i}.safetensors"))
    with pytest.raises(ValueError) as err:
        import_activations(folder, tmp_path / "set")
    assert "tokens" in str(err.value) and "x" in str(err.value) and "key=" in str(err.value)
    manifest = import_activations(folder, tmp_path / "set", key="x", hook_name="blocks.3.hook_resid_post", link="copy")
    assert manifest["link"] == "copy" and manifest["n_tokens"] == 50
    store = ActivationStore(tmp_path / "set")
    assert store.hooks == ["blocks.3.hook_resid_post"]
    assert torch.equal(store.read("blocks.3.hook_resid_post", 25, 35), torch.cat(parts)[25:35])
    with pytest.raises(ValueError, match="no tensor 'y'"):
        import_activations(folder, tmp_path / "other", key="y")


def test_import_rejects_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_activations(tmp_path / "missing.safetensors", tmp_path / "set")
    save_file({"a": torch.randn(10)}, str(tmp_path / "flat.safetensors"))
    with pytest.raises(ValueError, match=r"shape \(10,\); expected \[tokens, d_in\]"):
        import_activations(tmp_path / "flat.safetensors", tmp_path / "set")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_file({"a": torch.randn(4, 8)}, str(mixed / "0.safetensors"))
    save_file({"a": torch.randn(4, 6)}, str(mixed / "1.safetensors"))
    with pytest.raises(ValueError, match="width 6"):
        import_activations(mixed, tmp_path / "set")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"junk\.safetensors"):
        import_activations(tmp_path / "junk.safetensors", tmp_path / "set")


def test_two_hooks_read_with_one_seed_line_up_token_by_token(full_set: Path) -> None:
    """A transcoder trains on [input hook | output hook] rows of the same tokens."""
    from mistudio_tui.ml.activations.store import HELD_OUT_FRACTION, store_source

    store = ActivationStore(full_set)
    (lo, hi), _ = held_out_split(store, fraction=HELD_OUT_FRACTION)
    source = store_source(str(full_set), HOOKS[0], seed=3, hook_out=HOOKS[1])
    assert source.d_in == 64
    pairs = torch.cat([store.read(HOOKS[0], lo, hi), store.read(HOOKS[1], lo, hi)], dim=1)
    drawn = _draw(source, [9] * ((hi - lo) // 9) + [(hi - lo) % 9])
    assert _keys(drawn) == _keys(pairs)  # every row pairs a token's input with the same token's output
    state = source.state_dict()
    following = source.next_batch(5)
    source.load_state_dict(state)
    assert torch.equal(source.next_batch(5), following)
