"""Build the offline sample: the stdlib-docstring corpus and a tiny GPT-2 trained on it, replaced atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mistudio_tui.ml.sample.corpus import DEFAULT_MAX_CHARS, build_corpus
from mistudio_tui.ml.sample.tiny_lm import train_tiny_lm
from mistudio_tui.reporting import JobContext

DATASET_NAME = "sample-stdlib-docs"
MODEL_NAME = "sample-tiny-gpt2"
CORPUS_FILE = "docs.jsonl"


def build_sample(
    datasets_dir: Path,
    models_dir: Path,
    ctx: JobContext,
    time_budget_s: float | None = None,
    max_steps: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    **lm_options: Any,
) -> dict[str, Any]:
    """Build corpus and model in temporary folders, then swap them in for any previous sample; return stats."""
    datasets_dir, models_dir = Path(datasets_dir), Path(models_dir)
    dataset_dir, model_dir = datasets_dir / DATASET_NAME, models_dir / MODEL_NAME
    for parent, name in ((datasets_dir, DATASET_NAME), (models_dir, MODEL_NAME)):
        parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(parent, name)

    staged_dataset = Path(tempfile.mkdtemp(prefix=_staging_prefix(DATASET_NAME), dir=datasets_dir))
    staged_model = Path(tempfile.mkdtemp(prefix=_staging_prefix(MODEL_NAME), dir=models_dir))
    try:
        ctx.log(f"building the sample corpus {DATASET_NAME}")
        corpus = build_corpus(staged_dataset / CORPUS_FILE, max_chars=max_chars, ctx=ctx)
        ctx.check_cancelled()
        ctx.log(f"{corpus['documents']} documents, {corpus['characters']:,} characters; training {MODEL_NAME}")
        model = train_tiny_lm(
            staged_dataset / CORPUS_FILE,
            staged_model,
            time_budget_s=time_budget_s,
            max_steps=max_steps,
            ctx=ctx,
            **lm_options,
        )
        ctx.check_cancelled()
        _replace_dir(staged_dataset, dataset_dir)
        _replace_dir(staged_model, model_dir)
    finally:
        shutil.rmtree(staged_dataset, ignore_errors=True)
        shutil.rmtree(staged_model, ignore_errors=True)

    corpus_path = dataset_dir / CORPUS_FILE
    corpus["path"] = str(corpus_path)
    model.update(path=str(model_dir), corpus_file=str(corpus_path))
    ctx.artifact("dataset", corpus_path, name=DATASET_NAME, documents=corpus["documents"])
    ctx.artifact("model", model_dir, name=MODEL_NAME, val_loss=model["val_loss"])
    return {
        "dataset_name": DATASET_NAME,
        "corpus_path": str(corpus_path),
        "model_name": MODEL_NAME,
        "model_path": str(model_dir),
        "corpus": corpus,
        "model": model,
    }


def _staging_prefix(name: str) -> str:
    return f".{name}.staging-"


def _remove_leftovers(parent: Path, name: str) -> None:
    """Delete staging folders a killed earlier build left behind."""
    for leftover in parent.glob(f"{_staging_prefix(name)}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _replace_dir(staged: Path, final: Path) -> None:
    """Move `staged` to `final`; an existing `final` is renamed aside first and deleted once the swap is done."""
    old = None
    if final.exists() or final.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=_staging_prefix(final.name), dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
