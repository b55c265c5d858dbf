"""The whole pipeline once, end to end, through the CLI and real worker processes, on a tiny model and corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from tests.chat_server import ChatServer, FakeInterpreter

pytestmark = pytest.mark.slow


def cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> dict | list:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    if ok:
        assert code == 0, out
    else:
        assert code != 0
    return json.loads(out)


@pytest.fixture
def corpus_file(tmp_path: Path, tiny_corpus: list[str]) -> Path:
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"text": f"{text} ({i})"}) for i, text in enumerate(tiny_corpus * 3)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pipeline_from_corpus_to_labelled_features(capsys, corpus_file, tiny_lm_dir, monkeypatch):
    dataset = cli(capsys, "datasets", "add", str(corpus_file), "--name", "corpus")
    assert dataset["status"] == "ready" and dataset["n_documents"] == 96

    model = cli(capsys, "models", "add", str(tiny_lm_dir), "--name", "tiny")
    assert model["status"] == "ready" and model["d_model"] == 32 and model["n_layers"] == 2

    tok = cli(capsys, "datasets", "tokenize", "corpus", "--model", "tiny", "--context-size", "32")
    assert tok["status"] == "ready" and tok["n_tokens"] > 1000

    acts = cli(
        capsys,
        "activations",
        "extract",
        "--model",
        "tiny",
        "--tokenization",
        str(tok["id"]),
        "--hook",
        "blocks.0.hook_resid_post",
        "--tokens",
        "3000",
    )
    assert acts["status"] == "ready" and acts["n_tokens"] == 3000 and acts["d_in"] == 32

    run = cli(
        capsys,
        "train",
        "--activations",
        str(acts["id"]),
        "--arch",
        "topk",
        "--k",
        "4",
        "--expansion",
        "4",
        "--tokens",
        "20k",
        "--batch-size",
        "256",
    )
    assert run["status"] == "completed" and run["d_sae"] == 128 and run["steps"] > 0
    shown = cli(capsys, "trainings", "show", str(run["id"]))
    assert 0 < shown["explained_variance"] <= 1 and "ce_loss_recovered" in shown["evaluation"]
    assert (Path(run["path"]) / "cfg.json").exists() and (Path(run["path"]) / "sae_weights.safetensors").exists()

    fset = cli(capsys, "features", "extract", str(run["id"]), "--tokens", "2000")
    assert fset["status"] == "ready" and fset["d_sae"] == 128
    rows = cli(capsys, "features", "list", str(fset["id"]), "--sort", "density", "--limit", "5")
    assert len(rows) == 5
    assert {"index", "density", "max_activation", "top_tokens", "technical_label", "semantic_label"} <= set(rows[0])
    assert rows[0]["density"] >= rows[-1]["density"] > 0

    monkeypatch.setenv("MY_KEY", "sk-test-secret-123")
    with ChatServer(FakeInterpreter(claim="numbers")) as server:
        run_label = cli(
            capsys,
            "label",
            str(fset["id"]),
            "--endpoint",
            server.base_url,
            "--model",
            "fake",
            "--features",
            ",".join(str(r["index"]) for r in rows[:3]),
            "--api-key-env",
            "MY_KEY",
        )
    assert run_label["features_done"] == 3 and run_label["features_failed"] == 0
    labelled = cli(capsys, "features", "list", str(fset["id"]), "--sort", "density", "--limit", "3")
    assert all(r["semantic_label"] for r in labelled)

    home = Path(dataset["path"]).parents[1]
    db_text = (home / "mistudio.db").read_bytes()
    assert b"sk-test-secret-123" not in db_text
    logs = " ".join(p.read_text(errors="replace") for p in (home / "logs").glob("job-*.log"))
    assert "it/s]" not in logs  # no tqdm bars of transformers/hub/datasets filling the log tails


def test_errors_are_one_line_and_exit_non_zero(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    code = main(["datasets", "add", str(bad)])
    err = capsys.readouterr().err
    assert code == 1
    assert "bad.jsonl line 2" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    code = main(["datasets", "add", str(tmp_path / "missing.jsonl")])
    assert code == 1 and "not found" in capsys.readouterr().err

    error = cli(capsys, "trainings", "show", "nope", ok=False)
    assert "no training with id or name 'nope'" in error["error"]
