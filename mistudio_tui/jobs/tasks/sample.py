"""Worker side of the sample job: build corpus and tiny LM, ingest the corpus like any dataset, describe the LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.sample import SampleParams


def run(params: SampleParams, ctx: JobContext) -> dict[str, Any]:
    from mistudio_tui.jobs.tasks.models import describe_folder
    from mistudio_tui.ml.data.ingest import ingest_dataset
    from mistudio_tui.ml.data.stats import dataset_stats
    from mistudio_tui.ml.sample.build import build_sample

    built = build_sample(
        params.datasets_dir, params.models_dir, ctx, time_budget_s=params.time_budget_s, max_steps=params.max_steps
    )
    corpus = Path(built["corpus_path"])
    dataset_dir = corpus.parent
    meta = ingest_dataset(corpus, dataset_dir, ctx=ctx)
    stats = dataset_stats(dataset_dir, ctx=ctx)
    model = describe_folder(Path(built["model_path"]))
    model.update(name=built["model_name"], path=built["model_path"], dtype="float32")
    return {
        "dataset": {
            "name": built["dataset_name"],
            "path": str(dataset_dir),
            "source": "Python standard library docstrings",
            "n_documents": meta["documents"],
            "n_chars": meta["characters"],
            "cleaning": meta.get("cleaning"),
            "stats": stats,
        },
        "model": model,
        "training": {k: v for k, v in built["model"].items() if isinstance(v, (int, float, str))},
    }
