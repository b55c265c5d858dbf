"""A deterministic home for UI tests: rows on every screen and a small real feature store (integer codes)."""

from __future__ import annotations

import json
from pathlib import Path

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.features import add_label, bulk_insert_features
from mistudio_tui.db.models import (
    ActivationSet,
    Dataset,
    FeatureSet,
    LanguageModel,
    Tokenization,
    Training,
)

WORDS = [" the", " cat", " sat", " on", " mat", ".", "\n", " dog", " ran", " far", "<|endoftext|>", " a"]


def write_feature_store(folder: Path, d_sae: int = 12, similar: bool = False) -> None:
    """Feature i fires (value i+1, an exact float) on token id i of a fixed token grid.

    With `similar`, decoder row i is e_i + 0.5·e_(i+1), so each feature's nearest neighbours are i±1.
    """
    import torch

    from mistudio_tui.ml.features.accumulate import FeatureAccumulator
    from mistudio_tui.ml.features.store import FeatureSetWriter

    folder.mkdir(parents=True, exist_ok=True)
    tokens = torch.tensor([[(3 * s + t) % len(WORDS) for t in range(10)] for s in range(8)], dtype=torch.long)
    codes = torch.zeros(8, 10, d_sae)
    for i in range(d_sae - 1):  # the last feature never fires: dead
        codes[..., i] = torch.where(tokens == i, torch.tensor(float(i + 1)), torch.tensor(0.0))
    acc = FeatureAccumulator(d_sae, top_k=4, n_quantiles=2, per_quantile=2, context=(3, 1), hist_bins=8)
    acc.update(codes, tokens, torch.arange(8), torch.ones(8, 10, dtype=torch.bool))
    stats = acc.finalize()
    neighbours = None
    if similar:
        from mistudio_tui.ml.features.similarity import similar_by_decoder

        decoder = torch.eye(d_sae + 1)[:d_sae] + 0.5 * torch.eye(d_sae + 1)[1:]
        neighbours = similar_by_decoder(decoder, top=3)
    FeatureSetWriter(folder).write(stats, {"hook": "blocks.0.hook_resid_post"}, similar=neighbours)
    (folder / "vocab.json").write_text(json.dumps(WORDS))


def populate(home: Path) -> dict[str, int]:
    """Dataset → tokenization → model → activation set → training with a curve → feature set with labels."""
    ds = Dataset.create(
        name="tiny-stories",
        source_type="local",
        source="/data/tiny.jsonl",
        path="/srv/mistudio/datasets/1-tiny-stories",
        status="ready",
        n_documents=1200,
        n_chars=480_000,
        stats={
            "length_chars": {"min": 12, "median": 380, "max": 2100},
            "length_histogram": {"edges": [10, 100, 1000, 10000], "counts": [50, 900, 250]},
            "samples": ["Once upon a time there was a cat.", "The dog ran far."],
        },
    )
    lm = LanguageModel.create(
        name="tiny-gpt2",
        source="/models/tiny",
        path="/models/tiny",
        status="ready",
        model_type="gpt2",
        family="gpt2",
        d_model=32,
        n_layers=2,
        n_params=120_000,
        vocab_size=300,
        architecture={
            "hook_points": [
                {"name": f"blocks.{L}.hook_{k}", "layer": L, "kind": k, "module_path": "-"}
                for L in range(2)
                for k in ("resid_pre", "resid_post", "mlp_out", "attn_out")
            ],
            "modules": {
                "name": "GPT2LMHeadModel",
                "class": "GPT2LMHeadModel",
                "total_params": 120_000,
                "children": [{"name": "transformer", "class": "GPT2Model", "total_params": 110_000, "children": []}],
            },
        },
    )
    tok = Tokenization.create(
        dataset=ds,
        model=lm,
        name="tiny-stories-ctx64",
        tokenizer="/models/tiny",
        context_size=64,
        n_tokens=150_000,
        n_sequences=2400,
        status="ready",
        path="/srv/mistudio/tokenizations/1",
    )
    aset = ActivationSet.create(
        name="tiny-L0-resid_post",
        model=lm,
        tokenization=tok,
        hooks=["blocks.0.hook_resid_post"],
        d_in=32,
        n_tokens=100_000,
        context_size=64,
        status="ready",
        path="/srv/mistudio/activations/1",
    )
    tr = Training.create(
        name="topk-run",
        activation_set=aset,
        model=lm,
        tokenization=tok,
        architecture="topk",
        hook_name="blocks.0.hook_resid_post",
        d_in=32,
        d_sae=12,
        status="completed",
        total_tokens=1_000_000,
        config={
            "sae": {"architecture": "topk", "d_in": 32, "d_sae": 12, "k": 4},
            "train": {"batch_size": 4096, "lr": None, "dtype": "fp32"},
        },
        device="cpu",
        path="/srv/mistudio/saes/1",
    )
    mq.bulk_load(
        tr.id,
        [
            {
                "step": s,
                "tokens": s * 4096,
                "loss": 1.0 / (1 + s / 10),
                "l0": 4.0,
                "explained_variance": min(0.9, s / 100),
                "dead_fraction": 0.0,
                "lr": 1e-3,
            }
            for s in range(0, 250)
        ],
    )
    tr = Training.get_by_id(tr.id)
    tr.steps, tr.tokens = 249, 249 * 4096
    tr.save()
    fdir = home / "features" / "1"
    write_feature_store(fdir)
    fset = FeatureSet.create(
        name="topk-run-features",
        training=tr,
        tokenization=tok,
        d_sae=12,
        n_tokens=80,
        n_alive=11,
        status="ready",
        path=str(fdir),
    )
    from mistudio_tui.ml.features.store import FeatureSetReader

    with FeatureSetReader(fdir) as reader:
        rows = [
            {
                "index": r["index"],
                "density": r["density"],
                "mean_activation": r["mean"],
                "max_activation": r["max"],
                "dead": r["dead"],
                "top_tokens": WORDS[r["index"]] if r["index"] < len(WORDS) else "",
                "technical_label": f"tok:{json.dumps(WORDS[r['index']])}" if not r["dead"] else "",
            }
            for r in reader.summary_table()
        ]
    bulk_insert_features(fset, rows)
    add_label(tr.id, 1, technical="cat", semantic="The word cat, as a noun.", method="manual")
    return {"dataset": ds.id, "model": lm.id, "training": tr.id, "featureset": fset.id}


def populate_runs(home: Path) -> dict[str, int]:
    """Trainings in every state on top of `populate`: a group of two, a failed OOM run with a log, a paused run."""
    from mistudio_tui.db.models import Job

    base = populate(home)
    first = Training.get_by_id(base["training"])
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    specs = [
        ("topk-k8", "running", "topk", {"k": 8}, 0.8, "L0-multi", "baseline", None),
        ("topk-k16", "running", "topk", {"k": 16}, 0.6, "L0-multi", "", None),
        ("relu-l1", "failed", "relu", {"l1_coefficient": 0.004}, 1.4, None, "ablation", "oom"),
        ("batchtopk-b", "paused", "batchtopk", {"k": 12}, 1.1, None, "baseline", None),
    ]
    ids = {"first": first.id}
    for i, (name, status, arch, sparsity, scale, group, tags, failure) in enumerate(specs):
        job = None
        if failure:
            log = logs / f"{name}.log"
            log.write_text(
                "step 120 loss 0.52\nstep 130 loss 0.51\n"
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
            )
            job = Job.create(kind="train", title=f"Train {name}", status="failed", log_path=str(log))
        tr = Training.create(
            name=name,
            activation_set=first.activation_set,
            model=first.model,
            tokenization=first.tokenization,
            architecture=arch,
            hook_name=first.hook_name,
            d_in=32,
            d_sae=64 * (i + 1),
            status=status,
            total_tokens=2_000_000,
            group_name=group,
            tags=tags,
            job=job,
            error="CUDA out of memory. Tried to allocate 2.00 GiB" if failure else None,
            config={
                "sae": {"architecture": arch, "d_in": 32, "d_sae": 64 * (i + 1), **sparsity},
                "train": {"batch_size": 4096, "lr": 1e-3 * (i + 1), "dtype": "fp32"},
            },
            device="cuda:0" if status == "running" else "cpu",
            path=str(home / "saes" / name),
            density_histogram={"step": 100, "edges": [-4, -3, -2, -1, 0], "counts": [3, 10, 40, 11]},
        )
        n = 150 if failure else 300
        mq.bulk_load(
            tr.id,
            [
                {
                    "step": s,
                    "tokens": s * 4096,
                    "loss": scale / (1 + s / 20),
                    "l0": 30.0 - s / 20,
                    "explained_variance": min(0.95, s / (200 * scale)),
                    "dead_fraction": 0.1,
                    "lr": 1e-3 * (i + 1),
                    "tokens_per_s": 40_000.0 + 100 * (s % 7),
                }
                for s in range(n)
            ],
        )
        last = n - 1
        Training.update(
            steps=last,
            tokens=last * 4096,
            loss=scale / (1 + last / 20),
            l0=30.0 - last / 20,
            explained_variance=min(0.95, last / (200 * scale)),
            dead_fraction=0.1,
            tokens_per_s=40_600.0,
        ).where(Training.id == tr.id).execute()
        ids[name] = tr.id
    return ids
