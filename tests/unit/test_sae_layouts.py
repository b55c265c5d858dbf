"""Every SAE layout opens to what its library computes: SAELens training saves (decoder-norm rescaling, BatchTopK,
activation scaling), the cfg.json fields that change the computation, Gemma Scope, Gemma Scope 2 and Llama Scope.

Each expected output comes from a reference written here from the layout's definition, not from miStudio's code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.jobs.kinds.sae import SAEImportParams
from mistudio_tui.jobs.tasks import sae as sae_task
from mistudio_tui.ml.hub import find_sae_folders
from mistudio_tui.ml.sae.formats import SAEFormatError, detect_format, load_any, load_saelens
from tests import hub_server


def import_sae(row: dict, ctx: LocalContext) -> dict:
    """The import task on a job row, read back as the worker reads it."""
    return sae_task.import_sae(SAEImportParams.from_json(row), ctx)


loopback_hub = hub_server.loopback_hub

D_IN, D_SAE, K = 8, 32, 3


def _tensors(seed: int = 0, dec_scale: float = 0.4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen) * dec_scale,  # rows far from unit norm
        "b_enc": torch.randn(D_SAE, generator=gen) * 0.2,
        "b_dec": torch.randn(D_IN, generator=gen) * 0.3,
    }


def _write_saelens(folder: Path, tensors: dict[str, torch.Tensor], **cfg: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "sae_weights.safetensors"))
    base = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "apply_b_dec_to_input": True}
    base.update({"normalize_activations": "none", "reshape_activations": "none"})
    base["metadata"] = {"sae_lens_version": "6.54.12", "hook_name": "blocks.1.hook_resid_post"}
    (folder / "cfg.json").write_text(json.dumps({**base, **cfg}))
    return folder


def _topk(values: torch.Tensor, k: int) -> torch.Tensor:
    top, index = values.topk(k, dim=-1)
    return torch.zeros_like(values).scatter(-1, index, top.relu())


def _assert_matches(loaded, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> None:
    torch.testing.assert_close(loaded.encode(x), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded(x), x_hat, atol=1e-5, rtol=1e-5)


# --- SAELens training saves ----------------------------------------------------------------------------------------
def test_topk_training_save_with_decoder_norm_rescaling(tmp_path: Path) -> None:
    """TrainingSAE.save_model of a TopK SAE: codes = topk(pre * |W_dec_i|), x_hat = (codes / |W_dec_i|) @ W_dec."""
    t = _tensors()
    folder = _write_saelens(tmp_path / "topk", t, architecture="topk", k=K, rescale_acts_by_decoder_norm=True)
    x = torch.randn(20, D_IN) * 2
    norms = t["W_dec"].norm(dim=-1)
    codes = _topk(((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) * norms, K)
    x_hat = (codes / norms) @ t["W_dec"] + t["b_dec"]
    loaded = load_any(folder)
    _assert_matches(loaded.sae, x, codes, x_hat)
    assert loaded.metadata["folded"] == ["rescale_acts_by_decoder_norm"]
    # without the flag the same tensors compute something else: the flag is what the test exercises
    unflagged = _write_saelens(tmp_path / "plain", t, architecture="topk", k=K)
    assert not torch.allclose(load_any(unflagged).sae.encode(x), codes, atol=1e-3)


def test_batchtopk_training_save_becomes_jumprelu(tmp_path: Path) -> None:
    """A BatchTopK training save (topk_threshold, decoder-norm rescaling) runs as SAELens's JumpReLU conversion."""
    t = _tensors(1)
    cut = torch.tensor(0.7, dtype=torch.float64)
    folder = _write_saelens(
        tmp_path / "b", {**t, "topk_threshold": cut}, architecture="batchtopk", k=3.5, rescale_acts_by_decoder_norm=True
    )
    x = torch.randn(20, D_IN) * 2
    norms = t["W_dec"].norm(dim=-1)
    hidden = ((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) * norms
    codes = hidden.relu() * (hidden > 0.7)
    x_hat = (codes / norms) @ t["W_dec"] + t["b_dec"]
    loaded = load_any(folder)
    assert loaded.sae.architecture == "jumprelu"
    _assert_matches(loaded.sae, x, codes, x_hat)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_expected_average_only_in_with_the_trainer_scaling_factor(tmp_path: Path, architecture: str) -> None:
    """A mid-run checkpoint: the trainer multiplies inputs by s and divides the output by s (activation_scaler.json).

    SAELens folds s into the weights first (so a rescaled TopK's codes come out divided by s), then the norms.
    """
    t = _tensors(2)
    s = 1.7
    extra = {"k": K, "rescale_acts_by_decoder_norm": True} if architecture == "topk" else {}
    folder = _write_saelens(
        tmp_path / "a", t, architecture=architecture, normalize_activations="expected_average_only_in", **extra
    )
    x = torch.randn(20, D_IN)
    pre = (x * s - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    if architecture == "topk":
        norms = t["W_dec"].norm(dim=-1)
        kept = _topk(pre * norms, K)
        codes, x_hat = kept / s, ((kept / norms) @ t["W_dec"] + t["b_dec"]) / s
    else:
        codes = pre.relu()
        x_hat = (codes @ t["W_dec"] + t["b_dec"]) / s
    with pytest.raises(SAEFormatError, match="normalize_activations='expected_average_only_in' but no scaling factor"):
        load_any(folder)
    _assert_matches(load_any(folder, norm_scaling_factor=s).sae, x, codes, x_hat)  # a factor from the catalogue
    (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": s, "has_whitening": False}))
    _assert_matches(load_any(folder).sae, x, codes, x_hat)


def test_apply_b_dec_to_input_false_and_jumprelu_thresholds(tmp_path: Path) -> None:
    t = _tensors(3)
    gen = torch.Generator().manual_seed(9)
    threshold = torch.rand(D_SAE, generator=gen) - 0.3  # some negative: SAELens's relu makes them act as 0
    x = torch.randn(20, D_IN)
    pre = x @ t["W_enc"] + t["b_enc"]
    codes = pre.relu() * (pre > threshold)
    x_hat = codes @ t["W_dec"] + t["b_dec"]
    a = _write_saelens(
        tmp_path / "a", {**t, "threshold": threshold}, architecture="jumprelu", apply_b_dec_to_input=False
    )
    _assert_matches(load_any(a).sae, x, codes, x_hat)
    positive = threshold.abs() + 0.05  # an older training save keeps log(threshold)
    b = _write_saelens(
        tmp_path / "b", {**t, "log_threshold": positive.log()}, architecture="jumprelu", apply_b_dec_to_input=False
    )
    codes = pre.relu() * (pre > positive)
    _assert_matches(load_any(b).sae, x, codes, codes @ t["W_dec"] + t["b_dec"])


def test_stored_dtype_and_legacy_scaling_factor(tmp_path: Path) -> None:
    t = {name: v.to(torch.bfloat16) for name, v in _tensors(4).items()}
    folder = _write_saelens(tmp_path / "bf16", t, architecture="standard", dtype="bfloat16")
    loaded = load_any(folder).sae
    assert loaded.W_enc.dtype == torch.bfloat16 and torch.equal(loaded.float().W_dec, t["W_dec"].float())
    # SAELens < 6 multiplied the codes by a per-latent `scaling_factor` before decoding
    t = _tensors(5)
    scale = torch.linspace(0.5, 1.5, D_SAE)
    old = _write_saelens(tmp_path / "old", {**t, "scaling_factor": scale}, architecture="standard")
    x = torch.randn(10, D_IN)
    codes = ((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]).relu()
    _assert_matches(load_any(old).sae, x, codes, (codes * scale) @ t["W_dec"] + t["b_dec"])


@pytest.mark.parametrize(
    ("cfg", "extra", "message"),
    [
        ({"metadata": {"hook_name": "blocks.0.attn.hook_z", "hook_head_index": 3}}, {}, "hook_head_index=3"),
        ({"reshape_activations": "hook_z"}, {}, "reshape_activations='hook_z'"),
        ({"reshape_activations": None, "metadata": {"hook_name": "blocks.2.attn.hook_z"}}, {}, "reshape_activations"),
        ({"normalize_activations": "layer_norm"}, {}, "normalize_activations='layer_norm'"),
        ({"normalize_activations": "covariance_whitening"}, {}, "normalize_activations='covariance_whitening'"),
        ({"rescale_acts_by_decoder_norm": True}, {}, "rescale_acts_by_decoder_norm is only defined for topk"),
        ({"apply_b_dec_to_input": "no"}, {}, "field 'apply_b_dec_to_input' should be true or false"),
        ({"dtype": "int8"}, {}, "field 'dtype'"),
        ({}, {"W_skip": torch.zeros(D_IN, D_IN)}, "tensors W_skip are not part of a standard SAE"),
        ({"architecture": "gated"}, {}, "architecture 'gated' is not supported"),
        ({"architecture": None}, {}, "missing field 'architecture'"),
    ],
)
def test_fields_that_cannot_be_honoured_are_refused_by_name(
    tmp_path: Path, cfg: dict, extra: dict, message: str
) -> None:
    folder = _write_saelens(tmp_path / "x", {**_tensors(), **extra}, **{"architecture": "standard", **cfg})
    with pytest.raises(SAEFormatError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_saelens(folder)


# --- Gemma Scope, Gemma Scope 2, Llama Scope ------------------------------------------------------------------------
def _jumprelu_reference(t: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gemma Scope's JumpReLU: no b_dec on the input, relu(pre) gated by pre > threshold."""
    pre = x @ t["W_enc"] + t["b_enc"]
    codes = pre.relu() * (pre > t["threshold"])
    return codes, codes @ t["W_dec"] + t["b_dec"]


def _gemma_tensors(seed: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {**_tensors(seed), "threshold": torch.rand(D_SAE, generator=gen) * 0.5}


def test_gemma_scope_params_npz(tmp_path: Path) -> None:
    t = _gemma_tensors()
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_12" / "width_16k" / "average_l0_82"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{k: v.numpy() for k, v in t.items()})
    assert detect_format(folder) == "gemma_scope"
    loaded = load_any(folder)
    x = torch.randn(12, D_IN)
    _assert_matches(loaded.sae, x, *_jumprelu_reference(t, x))
    assert loaded.metadata["hook_name"] == "blocks.12.hook_resid_post"
    assert loaded.metadata["model_name"] == "google/gemma-2-2b"
    with pytest.raises(SAEFormatError, match=r"attention SAE on per-head outputs \(hook_z\)"):
        load_any(folder, origin="google/gemma-scope-2b-pt-att/layer_3/width_16k/average_l0_30")


def test_gemma_scope_npz_is_read_without_pickle(tmp_path: Path) -> None:
    np.savez(tmp_path / "params.npz", W_enc=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SAEFormatError, match=r"not a readable \.npz archive of arrays"):
        load_any(tmp_path)


def test_gemma_scope_2_params_safetensors(tmp_path: Path) -> None:
    t = _gemma_tensors(7)
    folder = tmp_path / "resid_post" / "layer_5_width_16k_l0_medium"
    folder.mkdir(parents=True)
    save_file(
        {("w_" + k[2:] if k.startswith("W_") else k): v for k, v in t.items()}, str(folder / "params.safetensors")
    )
    loaded = load_any(folder, origin="google/gemma-scope-2-1b-pt/resid_post/layer_5_width_16k_l0_medium")
    x = torch.randn(12, D_IN)
    _assert_matches(loaded.sae, x, *_jumprelu_reference(t, x))
    assert loaded.source_format == "gemma_scope_2" and loaded.metadata["hook_name"] == "blocks.5.hook_resid_post"
    assert loaded.metadata["model_name"] == "google/gemma-3-1b-pt"


def _write_llama_scope(folder: Path, threshold: float = 0.3, mean_norm: float = 5.0, **extra: object) -> dict:
    gen = torch.Generator().manual_seed(8)
    raw = {
        "encoder.weight": torch.randn(D_SAE, D_IN, generator=gen),
        "encoder.bias": torch.randn(D_SAE, generator=gen) * 0.3,
        "decoder.weight": torch.randn(D_IN, D_SAE, generator=gen) * 0.2,
        "decoder.bias": torch.randn(D_IN, generator=gen),
    }
    (folder / "checkpoints").mkdir(parents=True)
    save_file(raw, str(folder / "checkpoints" / "final.safetensors"))
    hyper = {"d_model": D_IN, "d_sae": D_SAE, "hook_point_in": "blocks.7.hook_resid_post", "act_fn": "jumprelu"}
    hyper.update(
        hook_point_out="blocks.7.hook_resid_post", jump_relu_threshold=threshold, norm_activation="dataset-wise"
    )
    hyper["dataset_average_activation_norm"] = {"in": mean_norm, "out": mean_norm}
    (folder / "hyperparams.json").write_text(json.dumps({**hyper, **extra}))
    return raw


def test_llama_scope_hyperparams_and_checkpoint(tmp_path: Path) -> None:
    """Inputs are scaled by s = sqrt(d_model) / mean norm; SAELens gates at threshold * s and un-scales the output."""
    folder = tmp_path / "Llama3_1-8B-Base-L7R-8x"
    raw = _write_llama_scope(folder)
    s = math.sqrt(D_IN) / 5.0
    x = torch.randn(12, D_IN) * 5
    pre = (x * s) @ raw["encoder.weight"].T + raw["encoder.bias"]
    codes = pre.relu() * (pre > 0.3 * s)
    x_hat = (codes @ raw["decoder.weight"].T + raw["decoder.bias"]) / s
    loaded = load_any(folder)
    assert loaded.source_format == "llama_scope" and loaded.metadata["hook_name"] == "blocks.7.hook_resid_post"
    _assert_matches(loaded.sae, x, codes, x_hat)
    other = tmp_path / "tc"
    _write_llama_scope(other, hook_point_out="blocks.7.hook_mlp_out")
    with pytest.raises(SAEFormatError, match=r"hook_point_out 'blocks\.7\.hook_mlp_out' differs"):
        load_any(other)


def test_hub_listing_finds_the_downloaded_layouts() -> None:
    paths = [
        "layer_12/width_16k/average_l0_82/params.npz",
        "resid_post/layer_5_width_16k_l0_medium/params.safetensors",
        "resid_post/layer_5_width_16k_l0_medium/config.json",
        "Llama3_1-8B-Base-L7R-8x/hyperparams.json",
        "Llama3_1-8B-Base-L7R-8x/checkpoints/final.safetensors",
        "goodfire/Llama-3.1-8B-Instruct-SAE-l19.pth",
        "qwen/layer0.sae.pt",
        "qwen/layer1.sae.pt",  # several state dicts: pick one through a release
        "README.md",
    ]
    assert find_sae_folders(paths) == [
        "Llama3_1-8B-Base-L7R-8x",
        "goodfire",
        "layer_12/width_16k/average_l0_82",
        "resid_post/layer_5_width_16k_l0_medium",
    ]


def test_import_job_reads_gemma_scope_from_a_hub_repo(tmp_path: Path, loopback_hub) -> None:
    t = _gemma_tensors(9)
    repo = tmp_path / "repo"
    for width in ("average_l0_82", "average_l0_20"):
        (repo / "layer_12" / "width_16k" / width).mkdir(parents=True)
        np.savez(repo / "layer_12" / "width_16k" / width / "params.npz", **{k: v.numpy() for k, v in t.items()})
    loopback_hub.add_folder("google/gemma-scope-2b-pt-mlp", repo)
    out = tmp_path / "out"
    params = {"source": "google/gemma-scope-2b-pt-mlp", "hub": True, "out_dir": str(out)}
    result = import_sae({**params, "subfolder": "layer_12/width_16k/average_l0_82"}, LocalContext())
    assert result["summary"]["format"] == "gemma_scope"
    assert result["resource"]["hook_name"] == "blocks.12.hook_mlp_out"
    x = torch.randn(6, D_IN)
    _assert_matches(load_saelens(out)[0], x, *_jumprelu_reference(t, x))
    saved = json.loads((out / "cfg.json").read_text())
    assert saved["apply_b_dec_to_input"] is False and saved["architecture"] == "jumprelu"


# --- single-file state dicts (Goodfire, DeepSeek R1, Qwen Scope) ---------------------------------------------------
def _linear_state(keys: tuple[str, str, str, str], seed: int = 10) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    enc_w, enc_b, dec_w, dec_b = keys
    return {
        enc_w: torch.randn(D_SAE, D_IN, generator=gen),  # [d_sae, d_in]: an nn.Linear's weight
        enc_b: torch.randn(D_SAE, generator=gen) * 0.3,
        dec_w: torch.randn(D_IN, D_SAE, generator=gen),
        dec_b: torch.randn(D_IN, generator=gen),
    }


@pytest.mark.parametrize(
    ("keys", "file", "origin", "hook"),
    [
        (
            ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias"),
            "Llama-3.1-8B-Instruct-SAE-l19.pth",
            "Goodfire/Llama-3.1-8B-Instruct-SAE-l19/Llama-3.1-8B-Instruct-SAE-l19.pth",
            "blocks.19.hook_resid_post",
        ),
        (
            ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
            "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt",
            "",
            "blocks.19.hook_resid_post",
        ),
    ],
)
def test_single_file_standard_saes(tmp_path: Path, keys: tuple, file: str, origin: str, hook: str) -> None:
    """x_hat = relu(x @ enc.T + enc_b) @ dec.T + dec_b: no b_dec on the input."""
    state = _linear_state(keys)
    torch.save(state, tmp_path / file)
    loaded = load_any(tmp_path, origin=origin)
    assert loaded.source_format == "torch_state" and loaded.metadata["hook_name"] == hook
    x = torch.randn(10, D_IN)
    codes = (x @ state[keys[0]].T + state[keys[1]]).relu()
    _assert_matches(loaded.sae, x, codes, codes @ state[keys[2]].T + state[keys[3]])


def test_qwen_scope_topk_takes_k_from_the_repo_name(tmp_path: Path) -> None:
    state = _linear_state(("W_enc", "b_enc", "W_dec", "b_dec"), seed=11)
    torch.save(state, tmp_path / "layer4.sae.pt")
    with pytest.raises(SAEFormatError, match="k comes from its repo name"):
        load_any(tmp_path)
    loaded = load_any(tmp_path, origin="Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_5/layer4.sae.pt")
    assert loaded.sae.architecture == "topk" and loaded.sae.cfg.k == 5
    assert loaded.metadata["hook_name"] == "blocks.4.hook_resid_post"
    x = torch.randn(10, D_IN)
    codes = _topk(x @ state["W_enc"].T + state["b_enc"], 5)
    _assert_matches(loaded.sae, x, codes, codes @ state["W_dec"].T + state["b_dec"])


def test_single_file_state_dicts_load_without_pickle(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(2, 2), "extra": object()}, tmp_path / "sae.pt")
    with pytest.raises(SAEFormatError, match="cannot be loaded as a torch state dict"):
        load_any(tmp_path)


def test_dictionary_learning_jumprelu_negative_threshold_and_saebench_hook(tmp_path: Path) -> None:
    """dictionary_learning's JumpReluAutoEncoder: relu(pre * (pre > t)), so a negative t acts as 0."""
    gen = torch.Generator().manual_seed(12)
    state = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "b_enc": torch.randn(D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen),
        "b_dec": torch.randn(D_IN, generator=gen),
        "threshold": torch.rand(D_SAE, generator=gen) - 0.5,
    }
    torch.save(state, tmp_path / "ae.pt")
    trainer = {"dict_class": "JumpReluAutoEncoder", "layer": 12, "submodule_name": "resid_post_layer_12"}
    (tmp_path / "config.json").write_text(json.dumps({"trainer": trainer}))
    loaded = load_any(tmp_path)
    assert loaded.metadata["hook_name"] == "blocks.12.hook_resid_post"
    x = torch.randn(10, D_IN)
    pre = x @ state["W_enc"] + state["b_enc"]
    codes = torch.relu(pre * (pre > state["threshold"]))
    _assert_matches(loaded.sae, x, codes, codes @ state["W_dec"] + state["b_dec"])


def test_import_job_reads_llama_scope_from_a_hub_repo(tmp_path: Path, loopback_hub) -> None:
    """The nested checkpoints/final.safetensors comes down with the folder."""
    repo = tmp_path / "repo"
    raw = _write_llama_scope(repo / "Llama3_1-8B-Base-L7R-8x")
    _write_llama_scope(repo / "Llama3_1-8B-Base-L8R-8x")
    loopback_hub.add_folder("fnlp/Llama3_1-8B-Base-LXR-8x", repo)
    out = tmp_path / "out"
    params = {"source": "fnlp/Llama3_1-8B-Base-LXR-8x", "hub": True, "out_dir": str(out)}
    result = import_sae({**params, "subfolder": "Llama3_1-8B-Base-L7R-8x"}, LocalContext())
    assert result["summary"]["format"] == "llama_scope"
    s = math.sqrt(D_IN) / 5.0
    x = torch.randn(6, D_IN)
    pre = (x * s) @ raw["encoder.weight"].T + raw["encoder.bias"]
    codes = pre.relu() * (pre > 0.3 * s)
    _assert_matches(load_saelens(out)[0], x, codes, (codes @ raw["decoder.weight"].T + raw["decoder.bias"]) / s)


def test_oldest_saelens_configs_are_standard_only_for_a_catalogued_release(tmp_path: Path) -> None:
    """SAELens reads a pre-6.0 config naming no architecture as standard; outside its catalogue that is refused."""
    t = _tensors(13)
    folder = _write_saelens(tmp_path / "jb", t, hook_point="blocks.0.hook_resid_pre", architecture=None, metadata=None)
    with pytest.raises(SAEFormatError, match="missing field 'architecture'"):
        load_any(folder)
    loaded = load_any(folder, catalogued=True)
    x = torch.randn(6, D_IN)
    codes = ((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]).relu()
    _assert_matches(loaded.sae, x, codes, codes @ t["W_dec"] + t["b_dec"])
    assert loaded.metadata["hook_name"] == "blocks.0.hook_resid_pre"
    v6 = _write_saelens(tmp_path / "v6", t, architecture=None)  # a 6.x config without it is not SAELens's
    with pytest.raises(SAEFormatError, match="missing field 'architecture'"):
        load_any(v6, catalogued=True)
