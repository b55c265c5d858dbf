"""A BERT-style encoder works through the whole chain with the defaults: tokenize -> extract -> train -> features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CORPUS
from tests.home_chain import run_here
from tests.tiny_bert import save_tiny_bert, save_wordpiece_tokenizer


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with its WordPiece tokenizer, saved with save_pretrained."""
    out = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_bert(out, save_wordpiece_tokenizer(out, TINY_CORPUS))
    return out


@pytest.mark.slow
def test_a_bert_model_runs_the_chain_with_its_defaults(studio, tiny_bert_dir: Path, tmp_path: Path) -> None:
    from mistudio_tui.db.models import Dataset, Feature, Tokenization
    from mistudio_tui.jobs.context import LocalContext
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.data.tokenize import tokenize_dataset
    from mistudio_tui.services import datasets as dataset_svc
    from mistudio_tui.services import features as feature_svc
    from mistudio_tui.services import models as model_svc
    from mistudio_tui.services import trainings as training_svc

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in TINY_CORPUS))
    run_here(studio, model_svc.add_model(studio, str(tiny_bert_dir), name="bert"))
    run_here(studio, dataset_svc.add_dataset(studio, str(corpus), name="corpus"))
    tok_spec = dataset_svc.tokenize_dataset(studio, "corpus", model_ref="bert", context_size=16)
    run_here(studio, tok_spec)
    tokenization = Tokenization.get_by_id(tok_spec.resource.id)
    store = TokenStore(Path(tokenization.path))
    cls_id, sep_id = store.meta["bos_token_id"], store.meta["separator_token_id"]
    assert (cls_id, sep_id) == (2, 3)  # [CLS] starts every row, [SEP] separates the documents
    assert all(int(store.row(i)[0]) == cls_id for i in range(len(store)))
    assert tokenization.stats["start_token"] == "[CLS]" and tokenization.stats["separator_token"] == "[SEP]"
    ctx = LocalContext()
    tokenize_dataset(Dataset.get().path, str(tiny_bert_dir), tmp_path / "again", 16, ctx=ctx)
    assert any("rows start with [CLS]" in line and "separated by [SEP]" in line for line in ctx.logs)

    aset = model_svc.extract_activations(
        studio, "bert", tokenization.id, hooks=["blocks.1.hook_resid_post"], n_tokens=256, batch_size=4,
        shard_tokens=128, device="cpu",
    )  # fmt: skip
    run_here(studio, aset)
    trained = training_svc.new_training(
        studio, aset.resource.id, name="bert-sae", k=4, expansion=2, total_tokens=512, batch_size=64, device="cpu",
        checkpoint_every=1000,
    )  # fmt: skip
    run_here(studio, trained)
    spec = feature_svc.extract_features(studio, "bert-sae", n_tokens=256, device="cpu")
    run_here(studio, spec)
    assert Feature.select().where(Feature.feature_set == spec.resource.id).count() == 64
