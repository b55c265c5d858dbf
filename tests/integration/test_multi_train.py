"""Several SAEs from one job, and data-parallel training, through the CLI and real worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import Training, TrainingMetric, TrainingTemplate

pytestmark = pytest.mark.slow
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
SMALL = [
    "--arch",
    "topk",
    "--k",
    "4",
    "--expansion",
    "2",
    "--batch-size",
    "100",
    "--device",
    "cpu",
    "--template",
    "tiny",
]


def cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> dict | list:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert (code == 0) == ok, out
    return json.loads(out)


@pytest.fixture
def tokenization(capsys, tmp_path: Path, tiny_corpus: list[str], tiny_lm_dir: Path) -> int:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"{t} ({i})"}) for i, t in enumerate(tiny_corpus * 3)) + "\n")
    cli(capsys, "datasets", "add", str(corpus), "--name", "corpus")
    cli(capsys, "models", "add", str(tiny_lm_dir), "--name", "tiny")
    TrainingTemplate.create(name="tiny", config={"train": {"init_tokens": 500, "eval_tokens": 500}})
    return int(cli(capsys, "datasets", "tokenize", "corpus", "--model", "tiny", "--context-size", "32")["id"])


def check_group(group: dict, hooks: list[str]) -> list[Training]:
    runs = list(Training.select().where(Training.group_name == group["group_name"]).order_by(Training.id))
    assert [t.hook_name for t in runs] == hooks
    for t in runs:
        assert t.status == "completed", (t.name, t.error)
        assert t.steps == 20 and t.tokens == 2000 and t.loss is not None and t.explained_variance is not None
        assert (Path(t.path) / "cfg.json").is_file() and (Path(t.path) / "checkpoints").is_dir()
        # Each run got its own curve from the one job.
        steps = [m.step for m in TrainingMetric.select().where(TrainingMetric.training == t.id)]
        assert steps and max(steps) == 20
        cfg = json.loads((Path(t.path) / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == t.hook_name
    assert len({t.job_id for t in runs}) == 1
    return runs


def test_hooks_streamed_from_the_model_train_as_one_group(capsys, tokenization: int) -> None:
    group = cli(
        capsys,
        "train",
        "--model",
        "tiny",
        "--tokenization",
        str(tokenization),
        "--hooks",
        ",".join(HOOKS),
        "--tokens",
        "2000",
        *SMALL,
    )
    runs = check_group(group, HOOKS)
    assert all(t.activation_set is None for t in runs)
    assert all(t.evaluation.get("source") == "stream_reshuffled" for t in runs)

    error = cli(capsys, "train", "--model", "tiny", "--hooks", HOOKS[0], ok=False)
    assert "--tokenization" in error["error"]


def test_multi_hook_activation_set_and_two_process_training(capsys, tokenization: int) -> None:
    acts = cli(
        capsys,
        "activations",
        "extract",
        "--model",
        "tiny",
        "--tokenization",
        str(tokenization),
        "--hook",
        HOOKS[0],
        "--hook",
        HOOKS[1],
        "--tokens",
        "3000",
    )
    assert acts["status"] == "ready", acts
    group = cli(
        capsys, "train", "--activations", str(acts["id"]), "--hooks", ",".join(HOOKS), "--tokens", "2000", *SMALL
    )
    runs = check_group(group, HOOKS)
    assert all(t.evaluation.get("source") == "held_out" for t in runs)

    run = cli(
        capsys,
        "train",
        "--activations",
        str(acts["id"]),
        "--hook",
        HOOKS[1],
        "--nproc",
        "2",
        "--tokens",
        "2000",
        *SMALL,
    )
    assert run["status"] == "completed" and run["steps"] == 20, run
    training = Training.get_by_id(run["id"])
    assert "×2 (gloo)" in (training.device or "")
    assert TrainingMetric.select().where(TrainingMetric.training == training.id).count() > 0
