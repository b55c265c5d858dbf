"""A home holding the whole chain (models inside and outside it, dataset, tokenization, activations, a trained SAE),
built by running each job's task in this process: for tests that move or copy a home."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mistudio_tui.db.jobs import create_job, finish_job
from mistudio_tui.db.models import Job
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

HOOK = "blocks.1.hook_resid_post"
TRAIN = {"k": 4, "expansion": 2, "total_tokens": 512, "batch_size": 64, "device": "cpu", "checkpoint_every": 1000}


def queue(studio: Studio, spec: JobSpec) -> Job:
    """Create the queued job row exactly as the runner's submit does, without starting it."""
    params = get_kind(spec.kind).row_params(spec.params)
    return create_job(spec.kind, spec.title, params, spec.resource, os.getpid(), studio.paths.dir("logs"))


def run_here(studio: Studio, spec: JobSpec) -> dict[str, Any]:
    """Run a job's task in this process on the params read back from its row, and record it as the runner would."""
    job = queue(studio, spec)
    kind = get_kind(spec.kind)
    module, name = kind.entry.split(":")
    params = Job.get_by_id(job.id).params
    typed = kind.params.from_json(params) if kind.params else params  # as the worker hands them to the entry
    result = getattr(importlib.import_module(module), name)(typed, LocalContext())
    finish_job(job.id, "completed", result=result)
    kind.on_finish(Job.get_by_id(job.id), "completed", result)
    return result


def build_chain(studio: Studio, model_dir: Path, texts: list[str]) -> dict[str, JobSpec]:
    """Models "tiny" (copied into the home) and "outside" (registered in place), dataset "corpus", its tokenization,
    activations at HOOK and a trained SAE "trained"; returns the specs of the last three (their rows as resources)."""
    from mistudio_tui.services import datasets as dataset_svc
    from mistudio_tui.services import models as model_svc
    from mistudio_tui.services import trainings as training_svc

    corpus = studio.paths.home.parent / "corpus.jsonl"  # outside the home
    corpus.write_text("\n".join(json.dumps({"text": f"{t} ({i})"}) for i, t in enumerate(texts)))
    inside = shutil.copytree(model_dir, studio.paths.dir("models") / "mine")
    run_here(studio, model_svc.add_model(studio, str(inside), name="tiny"))
    run_here(studio, model_svc.add_model(studio, str(model_dir), name="outside"))
    run_here(studio, dataset_svc.add_dataset(studio, str(corpus), name="corpus"))
    tok = dataset_svc.tokenize_dataset(studio, "corpus", model_ref="tiny", context_size=16)
    run_here(studio, tok)
    aset = model_svc.extract_activations(
        studio, "tiny", tok.resource.id, hooks=[HOOK], n_tokens=256, batch_size=4, shard_tokens=128, device="cpu"
    )
    run_here(studio, aset)
    trained = training_svc.new_training(studio, aset.resource.id, name="trained", **TRAIN)
    run_here(studio, trained)
    return {"tokenization": tok, "activations": aset, "training": trained}
