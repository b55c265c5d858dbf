"""SAE formats: SAELens round trips, pre-6.0 configs, sparsify and dictionary_learning imports, bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.ml.sae.architectures import JumpReLUSAE, create_sae
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats import (
    LoadedSAE,
    SAEFormatError,
    detect_format,
    load_any,
    load_saelens,
    load_sparsity,
    save_saelens,
)

D_IN, D_SAE, K = 8, 32, 3


def _random_sae(architecture: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, architecture=architecture), gen)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        if architecture in ("jumprelu", "batchtopk", "matryoshka"):
            sae.threshold.copy_(torch.rand(D_SAE, generator=gen) * 0.5)
    return sae


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_saelens_round_trip_is_bit_exact(tmp_path: Path, architecture: str) -> None:
    sae = _random_sae(architecture).eval()
    sparsity = torch.log10(torch.rand(D_SAE) + 1e-10)
    metadata = {"model_name": "tiny-gpt2", "hook_name": "blocks.1.hook_resid_post", "context_size": 64}
    save_saelens(sae, tmp_path, metadata, sparsity=sparsity)
    loaded, cfg, meta = load_saelens(tmp_path)
    for name, tensor in sae.inference_tensors().items():
        assert torch.equal(loaded.inference_tensors()[name], tensor), name
    x = torch.randn(5, 7, D_IN)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae(x))
    assert meta["hook_name"] == "blocks.1.hook_resid_post" and meta["context_size"] == 64
    assert torch.equal(load_sparsity(tmp_path), sparsity)
    saved = json.loads((tmp_path / "cfg.json").read_text())
    assert saved["normalize_activations"] == "none" and saved["d_sae"] == D_SAE
    expected_arch = {"batchtopk": "jumprelu", "matryoshka": "jumprelu"}.get(architecture, architecture)
    assert saved["architecture"] == expected_arch == cfg.architecture
    if architecture == "topk":
        assert saved["k"] == K
    if architecture in ("batchtopk", "matryoshka"):
        assert isinstance(loaded, JumpReLUSAE)


@pytest.mark.parametrize("rescale", [True, False])
def test_saelens_matryoshka_training_save_imports_as_jumprelu(tmp_path: Path, rescale: bool) -> None:
    """A SAELens `matryoshka_batchtopk` training save: raw decoder norms, a scalar topk_threshold (double)."""
    gen = torch.Generator().manual_seed(3)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen) * (torch.rand(D_SAE, 1, generator=gen) + 0.5),
        "b_enc": torch.randn(D_SAE, generator=gen) * 0.1,
        "b_dec": torch.randn(D_IN, generator=gen) * 0.1,
        "topk_threshold": torch.tensor(0.7, dtype=torch.float64),
    }
    save_file(tensors, str(tmp_path / "sae_weights.safetensors"))
    cfg = {
        "architecture": "matryoshka_batchtopk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "k": 4.0,
        "topk_threshold_lr": 0.01,
        "aux_loss_coefficient": 1.0,
        "rescale_acts_by_decoder_norm": rescale,
        "decoder_init_norm": 0.1,
        "matryoshka_widths": [8, 16, 32],
        "metadata": {"hook_name": "blocks.0.hook_resid_post", "model_name": "tiny"},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = load_any(tmp_path)
    assert isinstance(loaded.sae, JumpReLUSAE) and loaded.metadata["hook_name"] == "blocks.0.hook_resid_post"
    # SAELens's training forward, thresholded as its inference export is: the reference the import must match
    x = torch.randn(64, D_IN, generator=gen) * 3
    norms = tensors["W_dec"].norm(dim=1) if rescale else torch.ones(D_SAE)
    hidden = ((x - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]) * norms
    codes = hidden * (hidden > 0.7)
    x_hat = (codes / norms) @ tensors["W_dec"] + tensors["b_dec"]
    assert bool((codes > 0).any()) and bool((hidden > 0).sum() > (codes > 0).sum())
    torch.testing.assert_close(loaded.sae.encode(x), codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded.sae(x), x_hat, rtol=1e-5, atol=1e-5)


D_OUT = 6


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu"])
@pytest.mark.parametrize("skip", [False, True])
def test_saelens_transcoder_round_trip_is_bit_exact(tmp_path: Path, architecture: str, skip: bool) -> None:
    gen = torch.Generator().manual_seed(4)
    cfg = SAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, architecture=architecture, d_out=D_OUT, skip_connection=skip,
        apply_b_dec_to_input=False,
    )  # fmt: skip
    sae = create_sae(cfg, gen)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        if isinstance(getattr(sae, "threshold", None), torch.Tensor):
            sae.threshold.clamp_(min=0.0)  # as training keeps it (SAELens's JumpReLU reads a negative one as 0)
    metadata = {"hook_name": "blocks.0.hook_resid_mid", "hook_name_out": "blocks.0.hook_mlp_out"}
    save_saelens(sae.eval(), tmp_path, metadata)
    saved = json.loads((tmp_path / "cfg.json").read_text())
    names = {"standard": "transcoder", "topk": "topk_transcoder", "batchtopk": "jumprelu_transcoder"}
    expected = names.get(architecture, "jumprelu_transcoder")
    if skip:
        expected = (
            "skip_transcoder" if architecture == "standard" else expected.replace("_transcoder", "_skip_transcoder")
        )
    assert saved["architecture"] == expected and saved["d_out"] == D_OUT and not saved["apply_b_dec_to_input"]
    loaded, loaded_cfg, meta = load_saelens(tmp_path)
    assert loaded_cfg.d_out == D_OUT and loaded_cfg.skip_connection == skip
    assert meta["hook_name_out"] == "blocks.0.hook_mlp_out"
    for name, tensor in sae.inference_tensors().items():
        assert torch.equal(loaded.inference_tensors()[name], tensor), name
    assert ("W_skip" in loaded.inference_tensors()) == skip
    x = torch.randn(3, 5, D_IN)
    assert loaded(x).shape == (3, 5, D_OUT)
    assert torch.equal(loaded(x), sae(x))


@pytest.mark.parametrize("architecture", ["skip_transcoder", "jumprelu_transcoder"])
def test_saelens_transcoder_written_by_saelens_matches_its_formula(tmp_path: Path, architecture: str) -> None:
    gen = torch.Generator().manual_seed(5)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "b_enc": torch.randn(D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_OUT, generator=gen),
        "b_dec": torch.randn(D_OUT, generator=gen),
    }
    if architecture == "skip_transcoder":
        tensors["W_skip"] = torch.randn(D_OUT, D_IN, generator=gen)
    else:
        tensors["threshold"] = torch.rand(D_SAE, generator=gen)
    save_file(tensors, str(tmp_path / "sae_weights.safetensors"))
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "d_out": D_OUT, "dtype": "float32",
           "apply_b_dec_to_input": False, "normalize_activations": "none",
           "metadata": {"hook_name": "blocks.2.ln2.hook_normalized",
                        "hook_name_out": "blocks.2.hook_mlp_out"}}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = load_any(tmp_path)
    x = torch.randn(7, D_IN, generator=gen)
    pre = x @ tensors["W_enc"] + tensors["b_enc"]  # SAELens: a transcoder never subtracts b_dec from its input
    if architecture == "skip_transcoder":
        codes = pre.relu()
        expected = codes @ tensors["W_dec"] + tensors["b_dec"] + x @ tensors["W_skip"].T
    else:
        codes = pre.relu() * (pre > tensors["threshold"])
        expected = codes @ tensors["W_dec"] + tensors["b_dec"]
    torch.testing.assert_close(loaded.sae.encode(x), codes)
    torch.testing.assert_close(loaded.sae(x), expected)
    assert loaded.metadata["hook_name_out"] == "blocks.2.hook_mlp_out"


def test_saelens_pre_6_flat_config(tmp_path: Path) -> None:
    sae = _random_sae("topk")
    save_saelens(sae, tmp_path)
    cfg = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn": "topk",
        "activation_fn_kwargs": {"k": K},
        "hook_point": "blocks.0.hook_resid_pre",
        "hook_point_head_index": None,
        "model_name": "gpt2",
        "normalize_activations": False,
        "dtype": "torch.float32",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded, sae_cfg, meta = load_saelens(tmp_path)
    assert sae_cfg.architecture == "topk" and sae_cfg.k == K and sae_cfg.apply_b_dec_to_input
    assert meta["hook_name"] == "blocks.0.hook_resid_pre" and meta["model_name"] == "gpt2"
    x = torch.randn(4, D_IN)
    assert torch.equal(loaded(x), sae(x))


def test_saelens_unsupported_architecture_and_normaliser(tmp_path: Path) -> None:
    save_saelens(_random_sae("standard"), tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(SAEFormatError, match="architecture 'gated' is not supported"):
        load_saelens(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "layer_norm"}))
    with pytest.raises(SAEFormatError, match="normalize_activations='layer_norm'"):
        load_saelens(tmp_path)


def _reference_topk(x: torch.Tensor, enc_w: torch.Tensor, enc_b: torch.Tensor, k: int, sub: torch.Tensor | None):
    """Dense codes of a TopK SAE whose encoder is an nn.Linear [F, D] (sparsify / dictionary_learning)."""
    x_in = x - sub if sub is not None else x
    post = torch.relu(x_in @ enc_w.T + enc_b)
    values, index = post.topk(k, dim=-1)
    return torch.zeros_like(post).scatter(-1, index, values)


def _write_sparsify(
    folder: Path, transcode: bool = False, skip: bool = False, **cfg_extra: object
) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(3)
    n = D_IN * 4
    tensors = {
        "encoder.weight": torch.randn(n, D_IN, generator=gen),
        "encoder.bias": torch.randn(n, generator=gen) * 0.1,
        "W_dec": torch.randn(n, D_IN, generator=gen),
        "b_dec": torch.randn(D_IN, generator=gen),
    }
    if skip:
        tensors["W_skip"] = torch.randn(D_IN, D_IN, generator=gen)
    save_file(tensors, str(folder / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": 0, "k": K}
    cfg.update({"multi_topk": False, "skip_connection": skip, "transcode": transcode, "d_in": D_IN, **cfg_extra})
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return tensors


@pytest.mark.parametrize("transcode, skip", [(False, False), (True, False), (True, True)])
def test_sparsify_import_matches_reference(tmp_path: Path, transcode: bool, skip: bool) -> None:
    folder = tmp_path / "layers.3"
    raw = _write_sparsify(folder, transcode, skip)
    loaded = load_any(folder)
    assert isinstance(loaded, LoadedSAE) and loaded.source_format == "sparsify"
    assert loaded.metadata["hook_name"] == "layers.3" and loaded.sae.d_sae == D_IN * 4
    x = torch.randn(10, D_IN)
    codes = _reference_topk(x, raw["encoder.weight"], raw["encoder.bias"], K, None if transcode else raw["b_dec"])
    x_hat = codes @ raw["W_dec"] + raw["b_dec"]  # sparsify decodes with W_dec [n, d_in] as is
    if skip:
        x_hat = x_hat + x @ raw["W_skip"].T  # sparsify: sae_out += x @ W_skip.mT
    torch.testing.assert_close(loaded.sae.encode(x), codes)
    torch.testing.assert_close(loaded.sae(x), x_hat)
    assert loaded.sae.cfg.is_transcoder == transcode
    assert loaded.metadata.get("hook_name_out") == ("layers.3" if transcode else None)


def test_sparsify_unsupported_variants(tmp_path: Path) -> None:
    _write_sparsify(tmp_path / "a", activation="groupmax")
    with pytest.raises(SAEFormatError, match="activation 'groupmax'"):
        load_any(tmp_path / "a")
    _write_sparsify(tmp_path / "b", skip=True)
    with pytest.raises(SAEFormatError, match=r"skip connections .* transcoders only"):
        load_any(tmp_path / "b")


def _write_dictionary_learning(folder: Path, dict_class: str) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(4)
    F, D = D_SAE, D_IN
    if dict_class == "JumpReluAutoEncoder":
        state = {
            "W_enc": torch.randn(D, F, generator=gen),
            "b_enc": torch.randn(F, generator=gen) * 0.1,
            "W_dec": torch.randn(F, D, generator=gen),
            "b_dec": torch.randn(D, generator=gen),
            "threshold": torch.rand(F, generator=gen),
        }
    else:
        state = {
            "encoder.weight": torch.randn(F, D, generator=gen),
            "encoder.bias": torch.randn(F, generator=gen) * 0.1,
            "decoder.weight": torch.randn(D, F, generator=gen),
        }
        if dict_class == "AutoEncoder":
            state["bias"] = torch.randn(D, generator=gen)
        else:
            state["b_dec"] = torch.randn(D, generator=gen)
            state["k"] = torch.tensor(K)
            state["threshold"] = torch.tensor(0.7 if dict_class == "BatchTopKSAE" else -1.0)
    torch.save(state, folder / "ae.pt")
    trainer = {"dict_class": dict_class, "lm_name": "EleutherAI/pythia-70m", "layer": 3, "submodule_name": "resid_3"}
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}}))
    return state


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder"])
def test_dictionary_learning_import_matches_reference(tmp_path: Path, dict_class: str) -> None:
    raw = _write_dictionary_learning(tmp_path / "ae", dict_class)
    loaded = load_any(tmp_path / "ae")
    assert loaded.source_format == "dictionary_learning"
    assert loaded.metadata["model_name"] == "EleutherAI/pythia-70m" and loaded.metadata["layer"] == 3
    x = torch.randn(10, D_IN)
    if dict_class == "AutoEncoder":
        codes = torch.relu((x - raw["bias"]) @ raw["encoder.weight"].T + raw["encoder.bias"])
        x_hat = codes @ raw["decoder.weight"].T + raw["bias"]
    elif dict_class == "AutoEncoderTopK":
        codes = _reference_topk(x, raw["encoder.weight"], raw["encoder.bias"], K, raw["b_dec"])
        x_hat = codes @ raw["decoder.weight"].T + raw["b_dec"]
    elif dict_class == "BatchTopKSAE":
        post = torch.relu((x - raw["b_dec"]) @ raw["encoder.weight"].T + raw["encoder.bias"])
        codes = post * (post > raw["threshold"])
        x_hat = codes @ raw["decoder.weight"].T + raw["b_dec"]
    else:
        pre = x @ raw["W_enc"] + raw["b_enc"]
        codes = torch.relu(pre * (pre > raw["threshold"]))
        x_hat = codes @ raw["W_dec"] + raw["b_dec"]
    assert (codes > 0).any()
    torch.testing.assert_close(loaded.sae.encode(x), codes)
    torch.testing.assert_close(loaded.sae(x), x_hat)


def test_dictionary_learning_unsupported_class(tmp_path: Path) -> None:
    _write_dictionary_learning(tmp_path / "ae", "AutoEncoder")
    (tmp_path / "ae" / "config.json").write_text(json.dumps({"trainer": {"dict_class": "GatedAutoEncoder"}}))
    with pytest.raises(SAEFormatError, match="GatedAutoEncoder"):
        load_any(tmp_path / "ae")


def test_detect_format(tmp_path: Path) -> None:
    save_saelens(_random_sae("topk"), tmp_path / "lens")
    _write_sparsify(tmp_path / "sparsify" / "layers.0")
    _write_sparsify(tmp_path / "sparsify" / "layers.1")
    _write_dictionary_learning(tmp_path / "dl", "AutoEncoder")
    assert detect_format(tmp_path / "lens") == "saelens"
    assert detect_format(tmp_path / "sparsify" / "layers.0") == "sparsify"
    assert detect_format(tmp_path / "dl") == "dictionary_learning"
    with pytest.raises(SAEFormatError, match=r"several SAEs \(layers.0, layers.1\)"):
        detect_format(tmp_path / "sparsify")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEFormatError, match="is not an SAE folder"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing"):
        detect_format(tmp_path / "missing")


def test_bad_files_name_the_file_and_key(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    save_saelens(_random_sae("jumprelu"), folder)
    weights = folder / "sae_weights.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(SAEFormatError, match=re.escape("sae_weights.safetensors is not a readable safetensors file")):
        load_saelens(folder)

    tensors = {k: v for k, v in _random_sae("jumprelu").inference_tensors().items() if k != "threshold"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights))
    with pytest.raises(SAEFormatError, match="has no tensor 'threshold'"):
        load_saelens(folder)

    tensors = dict(_random_sae("jumprelu").inference_tensors())
    tensors["W_dec"] = torch.zeros(D_SAE, D_IN + 1)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights))
    with pytest.raises(
        SAEFormatError, match=rf"'W_dec' has shape \({D_SAE}, {D_IN + 1}\), expected \({D_SAE}, {D_IN}\)"
    ):
        load_saelens(folder)

    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(SAEFormatError, match=re.escape("cfg.json is not valid JSON")):
        load_saelens(folder)

    weights.unlink()
    (folder / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "architecture": "standard"}))
    with pytest.raises(FileNotFoundError, match=re.escape("sae_weights.safetensors does not exist")):
        load_saelens(folder)

    _write_dictionary_learning(tmp_path / "dl", "AutoEncoder")
    (tmp_path / "dl" / "ae.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SAEFormatError, match=re.escape("ae.pt cannot be loaded")):
        load_any(tmp_path / "dl")

    _write_sparsify(tmp_path / "sp")
    save_file({"encoder.weight": torch.zeros(D_IN * 4, D_IN)}, str(tmp_path / "sp" / "sae.safetensors"))
    with pytest.raises(SAEFormatError, match=re.escape("sae.safetensors has no tensor 'encoder.bias'")):
        load_any(tmp_path / "sp")
