"""Saved SAEs: on-demand evaluation, import from folders and hub repos, SAELens export, and their CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.cli.main import main
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.jobs.kinds.sae import SAEEvalParams, SAEImportParams
from mistudio_tui.jobs.tasks import sae as sae_task
from mistudio_tui.ml.activations.importing import import_activations
from mistudio_tui.ml.activations.store import ActivationStore, held_out_split
from mistudio_tui.ml.data.token_store import TokenStoreWriter
from mistudio_tui.ml.sae.architectures import create_sae
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats import load_any, load_saelens, save_saelens
from tests import hub_server

loopback_hub = hub_server.loopback_hub


def import_sae(row: dict, ctx: LocalContext) -> dict:
    """The import task on a job row written as the services write it, read back as the worker reads it."""
    return sae_task.import_sae(SAEImportParams.from_json(row), ctx)


def evaluate(row: dict, ctx: LocalContext) -> dict:
    """The evaluation task on a job row, read back as the worker reads it."""
    return sae_task.evaluate(SAEEvalParams.from_json({"training_id": 1, **row}), ctx)


D_IN, D_SAE, K = 32, 64, 4  # D_IN is the tiny GPT-2's d_model
HOOK = "blocks.0.hook_resid_post"


def _topk_sae(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, architecture="topk"), gen)
    with torch.no_grad():
        sae.b_enc.add_(torch.randn(D_SAE, generator=gen) * 0.1)
        sae.b_dec.add_(torch.randn(D_IN, generator=gen) * 0.1)
    return sae.eval()


def _write_sparsify(folder: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "encoder.weight": torch.randn(D_SAE, D_IN, generator=gen),
        "encoder.bias": torch.randn(D_SAE, generator=gen) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen),
        "b_dec": torch.randn(D_IN, generator=gen),
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 2, "num_latents": D_SAE, "k": K, "d_in": D_IN}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return tensors


def _sparsify_reference(raw: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """sparsify's forward from its raw tensors: relu(encoder(x - b_dec)), top k, then codes @ W_dec + b_dec."""
    post = torch.relu((x - raw["b_dec"]) @ raw["encoder.weight"].T + raw["encoder.bias"])
    values, index = post.topk(K, dim=-1)
    return torch.zeros_like(post).scatter(-1, index, values) @ raw["W_dec"] + raw["b_dec"]


def _write_dictionary_learning(folder: Path) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(2)
    state = {
        "encoder.weight": torch.randn(D_SAE, D_IN, generator=gen),
        "encoder.bias": torch.randn(D_SAE, generator=gen) * 0.1,
        "decoder.weight": torch.randn(D_IN, D_SAE, generator=gen),
        "bias": torch.randn(D_IN, generator=gen),
    }
    torch.save(state, folder / "ae.pt")
    trainer = {"dict_class": "AutoEncoder", "lm_name": "tiny", "layer": 0}
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    return state


# --- import ------------------------------------------------------------------------------------------
def test_import_task_converts_sparsify_and_dictionary_learning_to_saelens(tmp_path: Path) -> None:
    x = torch.randn(16, D_IN)
    raw = _write_sparsify(tmp_path / "sparsify" / HOOK)
    result = import_sae({"source": str(tmp_path / "sparsify" / HOOK), "out_dir": str(tmp_path / "a")}, LocalContext())
    sae, cfg, metadata = load_saelens(tmp_path / "a")
    torch.testing.assert_close(sae(x), _sparsify_reference(raw, x))
    assert metadata["hook_name"] == HOOK and cfg.k == K
    resource = result["resource"]
    assert resource["status"] == "ready" and resource["architecture"] == "topk" and resource["d_sae"] == D_SAE
    assert resource["config"]["import"]["format"] == "sparsify"

    state = _write_dictionary_learning(tmp_path / "dl")
    params = {"source": str(tmp_path / "dl"), "out_dir": str(tmp_path / "b"), "hook": HOOK, "model_name": "tiny"}
    result = import_sae(params, LocalContext())
    sae, _, metadata = load_saelens(tmp_path / "b")
    codes = torch.relu((x - state["bias"]) @ state["encoder.weight"].T + state["encoder.bias"])
    torch.testing.assert_close(sae(x), codes @ state["decoder.weight"].T + state["bias"])
    assert metadata["hook_name"] == HOOK and metadata["model_name"] == "tiny"
    assert result["resource"]["architecture"] == "standard" and result["resource"]["hook_name"] == HOOK
    with pytest.raises(ValueError, match="reads d_in=32 activations, but the model's width is 16"):
        import_sae({**params, "out_dir": str(tmp_path / "c"), "model_d_model": 16}, LocalContext())


def test_import_task_keeps_a_sparsify_skip_transcoder_a_transcoder(tmp_path: Path) -> None:
    folder = tmp_path / "sparsify" / HOOK
    raw = _write_sparsify(folder)
    raw["W_skip"] = torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(5))
    save_file(raw, str(folder / "sae.safetensors"))
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "transcode": True, "skip_connection": True}))
    result = import_sae({"source": str(folder), "out_dir": str(tmp_path / "a")}, LocalContext())
    sae, loaded_cfg, metadata = load_saelens(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "cfg.json").read_text())["architecture"] == "topk_skip_transcoder"
    assert loaded_cfg.d_out == D_IN and metadata["hook_name_out"] == HOOK
    assert result["resource"]["config"]["hook_name_out"] == HOOK
    x = torch.randn(16, D_IN)
    post = torch.relu(x @ raw["encoder.weight"].T + raw["encoder.bias"])  # a transcoder keeps b_dec off its input
    values, index = post.topk(K, dim=-1)
    expected = torch.zeros_like(post).scatter(-1, index, values) @ raw["W_dec"] + raw["b_dec"] + x @ raw["W_skip"].T
    torch.testing.assert_close(sae(x), expected)


def test_import_task_downloads_one_sae_of_a_hub_repo(tmp_path: Path, loopback_hub) -> None:
    repo = tmp_path / "repo"
    raw = _write_sparsify(repo / "layers.0")
    _write_sparsify(repo / "layers.1", seed=5)
    (repo / "README.md").write_text("two SAEs")
    loopback_hub.add_folder("test/saes", repo)
    out = tmp_path / "out"
    params = {"source": "test/saes", "hub": True, "out_dir": str(out)}
    with pytest.raises(ValueError, match=r"holds 2 SAEs; pick one with --subfolder: layers\.0, layers\.1"):
        import_sae(params, LocalContext())
    with pytest.raises(FileNotFoundError, match=r"no SAE in folder 'layers\.7'"):
        import_sae({**params, "subfolder": "layers.7"}, LocalContext())
    import_sae({**params, "subfolder": "layers.0"}, LocalContext())
    x = torch.randn(8, D_IN)
    torch.testing.assert_close(load_saelens(out)[0](x), _sparsify_reference(raw, x))
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors"]  # download removed


# --- evaluation --------------------------------------------------------------------------------------
@pytest.fixture
def eval_inputs(tmp_path: Path) -> dict[str, Path]:
    """A saved SAE, an activation set of 4000 rows and a 12-sequence tokenization of the tiny GPT-2's vocabulary."""
    save_saelens(_topk_sae(), tmp_path / "sae", {"hook_name": HOOK})
    gen = torch.Generator().manual_seed(7)
    save_file({"acts": torch.randn(4000, D_IN, generator=gen) * 2 + 1}, str(tmp_path / "acts.safetensors"))
    import_activations(tmp_path / "acts.safetensors", tmp_path / "aset", hook_name=HOOK, link="copy")
    writer = TokenStoreWriter(tmp_path / "tok", context_size=16)
    rng = np.random.default_rng(0)
    writer.append(rng.integers(1, 250, size=(12, 16)), np.array([16] * 10 + [9, 5]))
    writer.close({"bos_token_id": 0, "prepend_bos": False})
    return {"sae": tmp_path / "sae", "aset": tmp_path / "aset", "tok": tmp_path / "tok"}


def test_evaluate_task_measures_held_out_rows_and_ce_loss(eval_inputs: dict[str, Path], tiny_lm_dir: Path) -> None:
    params = {
        "sae_dir": str(eval_inputs["sae"]),
        "hook": HOOK,
        "tokens": 150,
        "device": "cpu",
        "source": {"dir": str(eval_inputs["aset"]), "hook": HOOK, "held_out": True},
        "eval": {
            "model_path": str(tiny_lm_dir),
            "tokenization_dir": str(eval_inputs["tok"]),
            "context_size": 16,
            "is_causal_lm": True,
        },
        "previous": {"note": "kept", "explained_variance": -1.0},
    }
    result = evaluate(params, LocalContext())
    evaluation = result["resource"]["evaluation"]
    # The same figure computed directly over the held-out tail (150 of its 200 rows, in any order: the sums of
    # squares of the whole tail are what we compare, so evaluate the whole tail too).
    full = evaluate({**params, "tokens": None, "eval": {}}, LocalContext())["resource"]["evaluation"]
    store = ActivationStore(eval_inputs["aset"])
    lo, hi = held_out_split(store, fraction=0.05)[1]
    x = store.read(HOOK, lo, hi).float()
    sae = load_saelens(eval_inputs["sae"])[0]
    with torch.no_grad():
        x_hat = sae(x)
    expected = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert full["tokens"] == hi - lo == 200 and full["source"] == "held_out"
    assert full["explained_variance"] == pytest.approx(float(expected), rel=1e-5)
    assert evaluation["tokens"] == 150 and evaluation["l0"] <= K
    assert evaluation["note"] == "kept" and evaluation["explained_variance"] != -1.0
    assert result["resource"]["explained_variance"] == evaluation["explained_variance"]
    # CE loss: 150 tokens / context 16 -> the last 10 sequences; the recovered fraction follows from the three CEs.
    clean, spliced, zero = (evaluation[f"ce_loss_{name}"] for name in ("clean", "sae", "zero"))
    assert evaluation["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean))
    assert evaluation["kl_sae"] >= 0 and evaluation["kl_zero"] >= 0
    assert evaluation["ce_eval_tokens"] == 8 * 15 + 8 + 4


def test_evaluate_task_needs_something_to_evaluate_on(eval_inputs: dict[str, Path]) -> None:
    params = {"sae_dir": str(eval_inputs["sae"]), "hook": HOOK, "device": "cpu", "source": {}, "eval": {}}
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(params, LocalContext())


# --- CLI through real workers --------------------------------------------------------------------------
def _cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> dict:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert (code == 0) == ok, out
    return json.loads(out)


@pytest.mark.slow
def test_cli_import_export_and_eval(
    capsys, studio, tmp_path: Path, tiny_lm_dir: Path, eval_inputs: dict[str, Path]
) -> None:
    from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization

    model = LanguageModel.create(
        name="tiny", source=str(tiny_lm_dir), path=str(tiny_lm_dir), status="ready", d_model=32
    )
    corpus = Dataset.create(name="corpus", status="ready")
    tok = Tokenization.create(
        name="corpus-tiny", dataset=corpus, model=model, path=str(eval_inputs["tok"]), context_size=16, status="ready"
    )
    run = _cli(capsys, "sae", "import", str(eval_inputs["sae"]), "--model", "tiny", "--name", "mine")
    assert run["origin"] == "imported" and run["status"] == "ready" and run["hook_name"] == HOOK
    assert run["architecture"] == "topk" and (run["d_in"], run["d_sae"]) == (D_IN, D_SAE)

    out = tmp_path / "exported"
    exported = _cli(capsys, "sae", "export", "mine", str(out))
    assert exported["files"] == ["cfg.json", "sae_weights.safetensors"]
    x = torch.randn(8, D_IN)
    torch.testing.assert_close(load_any(out).sae(x), load_saelens(eval_inputs["sae"])[0](x))
    error = _cli(capsys, "sae", "export", "mine", str(out), ok=False)
    assert "is not empty" in error["error"]

    error = _cli(capsys, "trainings", "eval", "mine", ok=False)
    assert "give a tokenization of its model with --tokenization" in error["error"]
    shown = _cli(capsys, "trainings", "eval", "mine", "--tokenization", str(tok.id), "--tokens", "64")
    assert {"ce_loss_clean", "ce_loss_sae", "ce_loss_zero", "ce_loss_recovered", "kl_sae"} <= set(shown["evaluation"])
    stored = _cli(capsys, "trainings", "show", "mine")
    assert stored["evaluation"] == shown["evaluation"] and stored["status"] == "ready"

    missing = _cli(capsys, "sae", "import", str(tmp_path / "nowhere"), ok=False)
    assert "neither an existing folder nor a hub repo id" in missing["error"]
