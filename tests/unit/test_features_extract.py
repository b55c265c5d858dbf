"""The extraction driver: chunked encoding, token limits, masks, progress, cancel, an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.features.cooccurrence import CooccurrenceAccumulator
from mistudio_tui.ml.features.extract import (
    ExtractionOptions,
    SequenceBatch,
    chunk_tokens,
    extract_feature_stats,
    valid_token_mask,
)
from mistudio_tui.ml.features.logit_lens import logit_lens
from mistudio_tui.ml.features.similarity import similar_by_decoder
from mistudio_tui.ml.features.store import FeatureSetReader, FeatureSetWriter

N_SEQ, SEQ_LEN, D_IN, D_SAE, BATCH = 40, 12, 8, 32, 6
BOS = 0


class LinearSAE:
    """A tiny random ReLU SAE: codes = relu(x @ W_enc + b_enc)."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=gen) / d_in**0.5
        self.b_enc = -0.5 * torch.rand(d_sae, generator=gen)
        self.W_dec = torch.randn(d_sae, d_in, generator=gen)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)


def dataset(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    token_ids = torch.randint(1, 50, (N_SEQ, SEQ_LEN), generator=gen)
    token_ids[:, 0] = BOS
    return token_ids, torch.randn(N_SEQ, SEQ_LEN, D_IN, generator=gen)


def batches(token_ids: torch.Tensor, acts: torch.Tensor, valid: torch.Tensor) -> list[SequenceBatch]:
    return [
        SequenceBatch(
            token_ids[lo : lo + BATCH],
            torch.arange(lo, min(lo + BATCH, N_SEQ)),
            valid[lo : lo + BATCH],
            acts[lo : lo + BATCH],
        )
        for lo in range(0, N_SEQ, BATCH)
    ]


def test_valid_token_mask_drops_special_ids_and_padding() -> None:
    token_ids = torch.tensor([[0, 5, 6, 7], [0, 9, 2, 2]])
    mask = valid_token_mask(token_ids, {0, 2}, lengths=torch.tensor([3, 4]))
    assert mask.tolist() == [[False, True, True, False], [False, True, False, False]]
    assert valid_token_mask(token_ids, []).all()


def test_matches_direct_encoding_with_small_encode_chunks() -> None:
    token_ids, acts = dataset()
    sae = LinearSAE(D_IN, D_SAE)
    valid = torch.ones(N_SEQ, SEQ_LEN, dtype=torch.bool)
    options = ExtractionOptions(top_k=5, context=(2, 2), encode_chunk_tokens=2 * SEQ_LEN, special_ids=(BOS,))
    ctx = LocalContext()
    stats = extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, options, ctx)

    codes = sae.encode(acts) * (token_ids != BOS)[..., None]
    flat = codes.reshape(-1, D_SAE)
    n_valid = int((token_ids != BOS).sum())
    assert stats.tokens_seen == n_valid
    assert torch.equal(stats.count, (flat > 0).sum(0))
    torch.testing.assert_close(stats.max, flat.max(0).values)
    expected_top = flat.topk(5, dim=0).values.T
    fired = (flat > 0).sum(0)
    for f in range(D_SAE):
        n = min(5, int(fired[f]))
        torch.testing.assert_close(stats.top.value[f, :n], expected_top[f, :n])
    for row in stats.top.sequence[stats.top.sequence >= 0].unique():
        assert 0 <= row < N_SEQ
    progress = [m for m in ctx.messages if isinstance(m, p.Progress)]
    assert progress and progress[-1].unit == "tokens" and progress[-1].done == n_valid


def test_token_limit_is_exact_and_reported() -> None:
    token_ids, acts = dataset(1)
    sae = LinearSAE(D_IN, D_SAE, seed=1)
    valid = token_ids != BOS
    ctx = LocalContext()
    options = ExtractionOptions(top_k=3, context=(1, 1))
    stats = extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, options, ctx, n_tokens=100)
    assert stats.tokens_seen == 100
    progress = [m for m in ctx.messages if isinstance(m, p.Progress)]
    assert progress[-1].done == 100 and progress[-1].total == 100
    # the first 100 valid tokens in reading order, nothing after them
    in_order = valid.reshape(-1).long().cumsum(0).reshape(valid.shape)
    used = valid & (in_order <= 100)
    codes = sae.encode(acts) * used[..., None]
    assert torch.equal(stats.count, (codes > 0).reshape(-1, D_SAE).sum(0))

    ctx = LocalContext()
    more = int(valid.sum()) + 50
    stats = extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, options, ctx, n_tokens=more)
    assert stats.tokens_seen == int(valid.sum())
    assert any("ran out" in line for line in ctx.logs)


def test_small_batches_are_gathered_into_full_encode_chunks() -> None:
    token_ids, acts = dataset(3)
    sae = LinearSAE(D_IN, D_SAE, seed=3)
    valid = token_ids != BOS
    shapes: list[int] = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        shapes.append(x.shape[0])
        return sae.encode(x)

    gathered = ExtractionOptions(top_k=3, context=(1, 1), encode_chunk_tokens=4 * BATCH * SEQ_LEN)
    stats = extract_feature_stats(batches(token_ids, acts, valid), encode, D_SAE, gathered, LocalContext())
    # 40 rows in batches of 6: chunks of 24 rows (4 batches) then the 16 left, instead of 7 small encodes
    assert shapes == [24 * SEQ_LEN, 16 * SEQ_LEN]
    one_by_one = ExtractionOptions(top_k=3, context=(1, 1), encode_chunk_tokens=SEQ_LEN)
    single = extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, one_by_one, LocalContext())
    assert torch.equal(stats.count, single.count) and torch.equal(stats.top.sequence, single.top.sequence)
    torch.testing.assert_close(stats.top.acts, single.top.acts)


def test_cooccurrence_sees_the_same_codes() -> None:
    token_ids, acts = dataset(2)
    sae = LinearSAE(D_IN, D_SAE, seed=2)
    valid = token_ids != BOS
    cooc = CooccurrenceAccumulator(D_SAE, group=[0, 1, 2], partners=0)
    options = ExtractionOptions(top_k=2, context=(1, 0))
    extract_feature_stats(
        batches(token_ids, acts, valid), sae.encode, D_SAE, options, LocalContext(), cooccurrence=cooc
    )
    fired = ((sae.encode(acts) > 0) & valid[..., None]).reshape(-1, D_SAE)[:, :3].double()
    assert torch.equal(cooc.group_counts, (fired.T @ fired).long())


def test_cancel_and_bad_input() -> None:
    token_ids, acts = dataset()
    sae = LinearSAE(D_IN, D_SAE)
    valid = torch.ones(N_SEQ, SEQ_LEN, dtype=torch.bool)
    options = ExtractionOptions(top_k=2, encode_chunk_tokens=BATCH * SEQ_LEN)
    with pytest.raises(JobCancelled):
        extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, options, LocalContext(cancel_after=2))
    with pytest.raises(ValueError, match="no valid tokens"):
        extract_feature_stats(batches(token_ids, acts, ~valid), sae.encode, D_SAE, options, LocalContext())
    with pytest.raises(ValueError, match=f"expected {D_SAE + 1}"):
        extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE + 1, options, LocalContext())


def test_end_to_end_on_a_tiny_language_model(tiny_lm_dir: Path, tiny_corpus: list[str], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    d_model = model.config.n_embd
    encoded = tok(tiny_corpus[:8], padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    bos = torch.full((8, 1), tok.bos_token_id)
    token_ids = torch.cat([bos, encoded["input_ids"]], dim=1)
    attention = torch.cat([torch.ones(8, 1, dtype=torch.long), encoded["attention_mask"]], dim=1)
    with torch.no_grad():
        hidden = model(input_ids=token_ids, attention_mask=attention, output_hidden_states=True).hidden_states[1]
    valid = valid_token_mask(token_ids, {tok.bos_token_id}, lengths=attention.sum(1))
    sae = LinearSAE(d_model, 64, seed=3)
    batch = [
        SequenceBatch(token_ids[lo : lo + 4], torch.arange(lo, lo + 4), valid[lo : lo + 4], hidden[lo : lo + 4])
        for lo in (0, 4)
    ]
    options = ExtractionOptions(top_k=4, context=(3, 1), dead_density=1e-3, pad_id=tok.pad_token_id)
    stats = extract_feature_stats(batch, sae.encode, 64, options, LocalContext())
    assert stats.tokens_seen == int(valid.sum())

    lens = logit_lens(sae.W_dec, model.lm_head, top=5, norm_weight=model.transformer.ln_f.weight)
    similar = similar_by_decoder(sae.W_dec, top=3)
    folder = tmp_path / "features"
    FeatureSetWriter(folder).write(stats, {"model": str(tiny_lm_dir)}, logit_lens=lens, similar=similar)
    reader = FeatureSetReader(folder)
    live = int((~stats.dead).nonzero()[0])
    detail = reader.feature(live)
    assert detail.top_examples and detail.promoted_ids is not None
    for example in detail.top_examples:
        row = token_ids[example.sequence]
        assert example.token_ids[example.marked] == row[example.position]
        assert tok.decode([int(t) for t in example.token_ids[example.mask]])  # decodable text
    rows = list(reader.summary_table())
    assert sum(r["dead"] for r in rows) == int(stats.dead.sum())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    token_ids, acts = dataset(4)
    sae = LinearSAE(D_IN, D_SAE, seed=4)
    valid = token_ids != BOS
    options = ExtractionOptions(top_k=4, context=(2, 1), encode_chunk_tokens=3 * SEQ_LEN)
    cpu = extract_feature_stats(batches(token_ids, acts, valid), sae.encode, D_SAE, options, LocalContext())
    gpu_sae = LinearSAE(D_IN, D_SAE, seed=4)
    gpu_sae.W_enc, gpu_sae.b_enc = gpu_sae.W_enc.cuda(), gpu_sae.b_enc.cuda()
    gpu_batches = batches(token_ids.cuda(), acts.cuda(), valid.cuda())
    cuda = extract_feature_stats(gpu_batches, gpu_sae.encode, D_SAE, options, LocalContext())
    assert cuda.tokens_seen == cpu.tokens_seen
    assert torch.equal(cuda.count, cpu.count)
    torch.testing.assert_close(cuda.top.value, cpu.top.value, atol=1e-5, rtol=1e-5)
    assert torch.equal(cuda.top.tokens, cpu.top.tokens)


def test_chunk_tokens_as_asked_else_per_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert chunk_tokens(ExtractionOptions(encode_chunk_tokens=300), 4096, cuda) == 300
    assert chunk_tokens(ExtractionOptions(), 4096, cpu) == 4096
    # on a GPU: as many tokens as 1 GiB of float32 codes holds, in multiples of 4,096, from 4,096 to 32,768
    assert chunk_tokens(ExtractionOptions(), 4096, cuda) == 32768
    assert chunk_tokens(ExtractionOptions(), 16384, cuda) == 16384
    assert chunk_tokens(ExtractionOptions(), 24576, cuda) == 8192
    assert chunk_tokens(ExtractionOptions(), 65536, cuda) == 4096
    assert chunk_tokens(ExtractionOptions(), 1 << 20, cuda) == 4096
