"""The extraction job end to end on a tiny GPT-2 with a planted feature: model, SAE and tokenization on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.jobs.kinds.features import FeaturesParams
from mistudio_tui.jobs.tasks.features import extract
from mistudio_tui.ml.data.token_store import TokenStoreWriter
from mistudio_tui.ml.features.store import FeatureSetReader
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.saelens import save_saelens

HOOK = "blocks.0.hook_resid_pre"  # token + position embeddings
CONTEXT = 24
D_SAE = 16
PLANTED = 0
STRENGTH = 7.5


@pytest.fixture(scope="module")
def planted(tiny_lm_dir: Path, tiny_corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A model whose embedding dimension 0 is STRENGTH on one token and 0 elsewhere; an SAE reading that dimension."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("planted")
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    rows = []
    for text in tiny_corpus:
        ids = [tok.bos_token_id, *tok(text)["input_ids"]][:CONTEXT]
        rows.append(ids + [tok.eos_token_id] * (CONTEXT - len(ids)))
    lengths = np.array([min(CONTEXT, 1 + len(tok(t)["input_ids"])) for t in tiny_corpus])
    grid = np.array(rows, dtype=np.int64)
    inside = np.arange(CONTEXT)[None, :] < lengths[:, None]
    counted = inside & (grid != tok.bos_token_id)
    values, counts = np.unique(grid[counted], return_counts=True)
    target = int(values[np.argsort(counts)[-3]])  # a frequent token, but not the most frequent one

    model = GPT2LMHeadModel.from_pretrained(tiny_lm_dir).eval()
    with torch.no_grad():
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wte.weight[target, 0] = STRENGTH
        model.transformer.wpe.weight[:, 0] = 0.0
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")

    writer = TokenStoreWriter(root / "tokens", CONTEXT)
    writer.append(grid, lengths)
    writer.close(
        {
            "bos_token_id": tok.bos_token_id,
            "pad_token_id": tok.eos_token_id,
            "special_token_ids": sorted(set(tok.all_special_ids)),
        }
    )

    generator = torch.Generator().manual_seed(0)
    d_in = model.config.n_embd
    W_enc = 0.3 * torch.randn(d_in, D_SAE, generator=generator)
    W_enc[:, PLANTED] = 0.0
    W_enc[0, PLANTED] = 1.0
    W_enc[0, 1:] = 0.0
    tensors = {
        "W_enc": W_enc,
        "b_enc": torch.zeros(D_SAE),
        "W_dec": torch.randn(D_SAE, d_in, generator=generator),
        "b_dec": torch.zeros(d_in),
    }
    cfg = SAEConfig(d_in=d_in, architecture="standard", d_sae=D_SAE, apply_b_dec_to_input=False)
    save_saelens(sae_from_tensors(cfg, tensors), root / "sae", metadata={"hook_name": HOOK})
    occurrences = int(((grid == target) & counted).sum())
    return {"root": root, "target": target, "occurrences": occurrences, "counted": int(counted.sum())}


def run_job(planted: dict, out: str, **options) -> tuple[Path, dict]:
    root = planted["root"]
    params = {
        "sae_dir": str(root / "sae"),
        "hook": HOOK,
        "model_path": str(root / "model"),
        "model_dtype": "float32",
        "is_causal_lm": True,
        "tokenization_dir": str(root / "tokens"),
        "out_dir": str(root / out),
        "device": "cpu",
        "n_tokens": 100_000,
        "top_k": 5,
        "n_quantiles": 2,
        "per_quantile": 2,
        "context_before": 3,
        "context_after": 1,
        "batch_size": 4,
        **options,
    }
    result = extract(FeaturesParams.from_json(params), LocalContext())  # the row's JSON, as the worker reads it
    assert result["resource"]["d_sae"] == D_SAE
    return root / out, result["resource"]


def test_extraction_finds_the_planted_feature(planted: dict) -> None:
    folder, resource = run_job(planted, "features")
    assert resource["n_tokens"] == planted["counted"]
    with FeatureSetReader(folder) as reader:
        detail = reader.feature(PLANTED)
        assert detail.count == planted["occurrences"]
        assert detail.max == pytest.approx(STRENGTH, rel=1e-5)
        assert len(detail.top_examples) == 5
        for example in detail.top_examples + [e for band in detail.quantile_bands for e in band.examples]:
            assert int(example.token_ids[example.marked]) == planted["target"]
            assert example.value == pytest.approx(STRENGTH, rel=1e-5)
            assert len(example.token_ids) == 3 + 1 + 1
    table = [json.loads(line) for line in (folder / "table.jsonl").read_text().splitlines()]
    vocab = json.loads((folder / "vocab.json").read_text())
    assert table[PLANTED]["technical_label"] == "tok:" + json.dumps(vocab[planted["target"]], ensure_ascii=False)


def test_options_shape_the_result(planted: dict) -> None:
    folder, resource = run_job(planted, "options", context_before=1, context_after=0, n_tokens=40, dead_density=0.5)
    assert resource["n_tokens"] == 40
    with FeatureSetReader(folder) as reader:
        density = reader.column("density")
        assert np.array_equal(reader.column("dead"), density < 0.5)
        assert int(reader.column("count").max()) <= 40
        example = reader.feature(int(np.argmax(density))).top_examples[0]
        assert len(example.token_ids) == 2 and example.marked == 1
