"""`activations resume` and `datasets resume` continue an interrupted job; `models add --dry-run` estimates memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.cli.main import main
from mistudio_tui.db.jobs import create_job, finish_job
from mistudio_tui.db.models import ActivationSet, Dataset, Job, LanguageModel, Tokenization
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.jobs.tasks import activations as activation_tasks
from mistudio_tui.jobs.tasks import datasets as dataset_tasks
from mistudio_tui.ml.activations.store import ActivationStore
from mistudio_tui.ml.data.token_store import TokenStore
from mistudio_tui.services import datasets as dataset_svc
from mistudio_tui.services import models as model_svc

pytestmark = pytest.mark.slow
HOOK = "blocks.1.hook_resid_post"


def cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> tuple[dict, str]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert (code == 0) == ok, captured.out + captured.err
    return (json.loads(captured.out) if ok and captured.out.strip() else {}), captured.err


def _interrupt(studio, spec, task, cancel_after: int) -> None:
    """Run a job's task in-process until it is cancelled, recording the job as the runner would."""
    params = get_kind(spec.kind).row_params(spec.params)  # what the runner's submit stores
    job = create_job(spec.kind, spec.title, params, spec.resource, os.getpid(), studio.paths.dir("logs"))
    with pytest.raises(JobCancelled):
        task(spec.params, LocalContext(cancel_after=cancel_after))
    finish_job(job.id, "cancelled", error="cancelled")


@pytest.fixture
def ready(capsys, studio, tmp_path: Path, tiny_corpus: list[str], tiny_lm_dir: Path) -> dict:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"{t} ({i})"}) for i, t in enumerate(tiny_corpus * 2)))
    cli(capsys, "datasets", "add", str(corpus), "--name", "corpus")
    cli(capsys, "models", "add", str(tiny_lm_dir), "--name", "tiny")
    tok, _ = cli(capsys, "datasets", "tokenize", "corpus", "--model", "tiny", "--context-size", "16")
    return {"tokenization": tok["id"]}


def test_interrupted_extraction_resumes_and_templates_apply(capsys, studio, ready) -> None:
    opts = {"hooks": [HOOK], "n_tokens": 600, "batch_size": 2, "shard_tokens": 50}
    spec = model_svc.extract_activations(studio, "tiny", ready["tokenization"], name="partial", **opts)
    _interrupt(studio, spec, activation_tasks.extract, cancel_after=4)
    aset = ActivationSet.get(ActivationSet.name == "partial")
    assert aset.status == "cancelled"
    folder = Path(aset.path)
    before = json.loads((folder / "manifest.json").read_text())
    assert 0 < before["n_tokens"] < 600 and not before["complete"]
    first = folder / "shard-00000.safetensors"
    first_stat = first.stat().st_mtime_ns

    resumed, _ = cli(capsys, "activations", "resume", "partial")
    assert resumed["status"] == "ready" and resumed["n_tokens"] == 600
    assert first.stat().st_mtime_ns == first_stat  # the shards already written were kept, not redone
    _, err = cli(capsys, "activations", "resume", "partial", ok=False)
    assert "already complete" in err

    whole, _ = cli(capsys, "activations", "extract", "--model", "tiny", "--tokenization", str(ready["tokenization"]),
                   "--hook", HOOK, "--tokens", "600", "--batch-size", "2", "--shard-tokens", "50")  # fmt: skip
    a, b = ActivationStore(folder), ActivationStore(Path(whole["path"]))
    assert torch.equal(a.read(HOOK), b.read(HOOK)) and torch.equal(a.sequences(), b.sequences())

    _, err = cli(capsys, "activations", "resume", "nothing", ok=False)
    assert "no activation set" in err
    _, err = cli(capsys, "datasets", "resume", "corpus", ok=False)
    assert "already complete" in err

    # a template fills what the extract flags leave out
    cli(capsys, "activations", "templates", "save", "small", "--hook", HOOK, "--tokens", "120",
        "--shard-tokens", "40", "--store-dtype", "float16")  # fmt: skip
    made, _ = cli(capsys, "activations", "extract", "--model", "tiny", "--tokenization", str(ready["tokenization"]),
                  "--template", "small", "--tokens", "80")  # fmt: skip
    assert made["status"] == "ready" and made["n_tokens"] == 80 and made["hooks"] == HOOK
    assert made["dtype"] == "float16"
    manifest = json.loads((Path(made["path"]) / "manifest.json").read_text())
    assert [s["n_tokens"] for s in manifest["shards"]] == [40, 40]


def test_interrupted_ingest_and_tokenization_resume(capsys, studio, tmp_path: Path, tiny_lm_dir: Path) -> None:
    corpus = tmp_path / "big.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"document {i} " + "word " * (i % 50)}) for i in range(20_000)))
    spec = dataset_svc.add_dataset(studio, str(corpus), name="big")
    _interrupt(studio, spec, dataset_tasks.ingest, cancel_after=3)
    dataset = Dataset.get(Dataset.name == "big")
    assert dataset.status == "cancelled"
    checkpoint = json.loads((Path(dataset.path) / "ingest_state.json").read_text())
    assert 0 < checkpoint["position"]["rows"] < 20_000
    resumed, _ = cli(capsys, "datasets", "resume", "big")
    assert resumed["status"] == "ready" and resumed["n_documents"] == 20_000
    log = Path(Job.get_by_id(resumed["job"]).log_path).read_text()
    assert f"resuming after {checkpoint['position']['rows']:,} rows" in log

    spec = dataset_svc.tokenize_dataset(studio, "big", tokenizer=str(tiny_lm_dir), context_size=32, name="cut")
    _interrupt(studio, spec, dataset_tasks.tokenize, cancel_after=5)
    assert Tokenization.get(Tokenization.name == "cut").status == "cancelled"
    cut, _ = cli(capsys, "tokenizations", "resume", "cut")
    whole, _ = cli(capsys, "datasets", "tokenize", "big", "--tokenizer", str(tiny_lm_dir), "--context-size", "32")
    assert cut["status"] == "ready" and cut["n_tokens"] == whole["n_tokens"] > 0
    assert "resuming after" in Path(Job.get_by_id(cut["job"]).log_path).read_text()
    assert np.array_equal(np.asarray(TokenStore(Path(cut["path"])).tokens), TokenStore(Path(whole["path"])).tokens)
    lines = (Path(resumed["path"]) / "documents.jsonl").read_text().splitlines()
    assert len(lines) == 20_000 and json.loads(lines[-1])["text"].startswith("document 19999")


def test_wrong_text_field_is_one_line_listing_the_fields(capsys, studio, tmp_path: Path) -> None:
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("\n".join(json.dumps({"title": f"t{i}", "body": f"note {i}"}) for i in range(20)))
    _, err = cli(capsys, "datasets", "add", str(corpus), "--text-field", "content", ok=False)
    assert "no field 'content'; available fields: title, body" in err and len(err.strip().splitlines()) == 1


def test_dry_run_estimates_memory_and_registers_nothing(capsys, studio, tiny_lm_dir: Path) -> None:
    data, _ = cli(capsys, "models", "add", str(tiny_lm_dir), "--dry-run")
    assert data["n_params"] > 0 and data["memory_estimate"] >= 4 * data["n_params"]
    half, _ = cli(capsys, "models", "add", str(tiny_lm_dir), "--dry-run", "--dtype", "bfloat16")
    assert half["memory_estimate"] < data["memory_estimate"]
    assert not LanguageModel.select().exists()
    if not torch.cuda.is_available():
        _, err = cli(capsys, "models", "add", str(tiny_lm_dir), "--dry-run", "--quantization", "8bit", ok=False)
        assert "needs a CUDA GPU" in err


def test_quantized_add_is_refused_without_cuda(capsys, studio, tiny_lm_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, err = cli(capsys, "models", "add", str(tiny_lm_dir), "--quantization", "4bit", ok=False)
    assert "4bit quantization needs a CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert LanguageModel.get().status == "failed"
