"""Hook points on tiny random models of each supported family: names, capture, early stop, patching, generation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mistudio_tui.ml.models.hooks import (
    capture,
    list_hook_points,
    n_layers,
    patch_activation,
    resolve_hook,
    run_with_capture,
)

N_LAYERS = 3
VOCAB = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _decoder(config_cls_name: str, **extra) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers
        from transformers import AutoModelForCausalLM

        config = getattr(transformers, config_cls_name)(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=2,
            max_position_embeddings=64,
            **extra,
        )
        return AutoModelForCausalLM.from_config(config)

    return build


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=N_LAYERS, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config)


_HEAD = {"head_dim": 16}
# family -> (builder, final norm applied to the last block's output in hidden_states[-1], residual structure)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], str | None, str]] = {
    "gpt2": (_gpt2, "transformer.ln_f", "sequential"),
    "neox_parallel": (
        _decoder("GPTNeoXConfig", use_parallel_residual=True, bos_token_id=0, eos_token_id=0),
        "gpt_neox.final_layer_norm",
        "parallel",
    ),
    "neox_sequential": (
        _decoder("GPTNeoXConfig", use_parallel_residual=False, bos_token_id=0, eos_token_id=0),
        "gpt_neox.final_layer_norm",
        "sequential",
    ),
    "llama": (_decoder("LlamaConfig", num_key_value_heads=1), "model.norm", "sequential"),
    "mistral": (_decoder("MistralConfig", num_key_value_heads=1), "model.norm", "sequential"),
    "qwen2": (_decoder("Qwen2Config", num_key_value_heads=1), "model.norm", "sequential"),
    "qwen3": (_decoder("Qwen3Config", num_key_value_heads=1, **_HEAD), "model.norm", "sequential"),
    "gemma": (_decoder("GemmaConfig", num_key_value_heads=1, **_HEAD), "model.norm", "sequential"),
    "gemma2": (_decoder("Gemma2Config", num_key_value_heads=1, **_HEAD), "model.norm", "sequential"),
    "gemma3_text": (_decoder("Gemma3TextConfig", num_key_value_heads=1, **_HEAD), "model.norm", "sequential"),
    "bert": (_bert, None, "post_ln"),
}
KINDS = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post")


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: builder().eval() for name, (builder, _, _) in FAMILIES.items()}


def _ids(batch: int = 2, seq: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _names(layer: int, model: nn.Module) -> list[str]:
    valid = {p.name for p in list_hook_points(model)}
    return [f"blocks.{layer}.hook_{k}" for k in KINDS if f"blocks.{layer}.hook_{k}" in valid]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hook_points_listed_for_every_layer(models: dict[str, nn.Module], family: str) -> None:
    model = models[family]
    points = list_hook_points(model)
    assert n_layers(model) == N_LAYERS
    names = {p.name for p in points}
    for layer in range(N_LAYERS):
        for kind in ("resid_pre", "resid_post", "attn_out", "mlp_out"):
            assert f"blocks.{layer}.hook_{kind}" in names
    # resid_mid exists exactly where the family has a residual stream between attention and MLP
    assert ("blocks.0.hook_resid_mid" in names) == (family != "neox_parallel")
    for p in points:
        model.get_submodule(p.module_path)
        assert p.layer is not None and 0 <= p.layer < N_LAYERS


@pytest.mark.parametrize("family", list(FAMILIES))
def test_residual_stream_matches_hidden_states(models: dict[str, nn.Module], family: str) -> None:
    model = models[family]
    _, final_norm, _ = FAMILIES[family]
    ids = _ids()
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        names = [f"blocks.{layer}.hook_{k}" for layer in range(N_LAYERS) for k in ("resid_pre", "resid_post")]
        acts = run_with_capture(model, names, input_ids=ids)
        for layer in range(N_LAYERS):
            torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
        for layer in range(N_LAYERS - 1):
            torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])
        last = acts[f"blocks.{N_LAYERS - 1}.hook_resid_post"]
        if final_norm is None:
            torch.testing.assert_close(last, hidden[-1])
        else:
            # the last hidden state HF returns is normed; the hook gives the raw residual stream
            assert not torch.allclose(last, hidden[-1])
            torch.testing.assert_close(model.get_submodule(final_norm)(last), hidden[-1])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sublayer_outputs_add_up_to_the_residual_stream(models: dict[str, nn.Module], family: str) -> None:
    model = models[family]
    _, _, structure = FAMILIES[family]
    layer = 1
    with torch.no_grad():
        a = run_with_capture(model, _names(layer, model), input_ids=_ids())
    pre, attn, mlp, post = (a[f"blocks.{layer}.hook_{k}"] for k in ("resid_pre", "attn_out", "mlp_out", "resid_post"))
    if structure == "parallel":
        torch.testing.assert_close(pre + attn + mlp, post)
    elif structure == "sequential":
        mid = a[f"blocks.{layer}.hook_resid_mid"]
        torch.testing.assert_close(pre + attn, mid)
        torch.testing.assert_close(mid + mlp, post)
    else:  # BERT is post-LN: each sublayer's output is added, then normalised
        mid = a[f"blocks.{layer}.hook_resid_mid"]
        block = model.get_submodule(f"encoder.layer.{layer}")
        with torch.no_grad():
            torch.testing.assert_close(block.attention.output.LayerNorm(pre + attn), mid)
            torch.testing.assert_close(block.output.LayerNorm(mid + mlp), post)


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "mlp_out", "resid_post"])
def test_identity_patch_changes_nothing_and_zeros_change_output(
    models: dict[str, nn.Module], family: str, kind: str
) -> None:
    model = models[family]
    ids = _ids()
    clean = _logits(model, ids)
    name = f"blocks.1.hook_{kind}"
    with patch_activation(model, name, lambda x: x):
        same = _logits(model, ids)
    torch.testing.assert_close(same, clean)
    with patch_activation(model, name, torch.zeros_like):
        zeroed = _logits(model, ids)
    assert (zeroed - clean).abs().max() > 1e-4
    torch.testing.assert_close(_logits(model, ids), clean)  # the patch is gone after the block


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2", "bert"])
def test_capture_stops_after_last_hooked_layer(models: dict[str, nn.Module], family: str) -> None:
    model = models[family]
    blocks = resolve_hook(model, "blocks.0.hook_resid_post").module_path.rsplit(".", 1)[0]
    calls = {"later": 0}

    def count(*_args) -> None:
        calls["later"] += 1

    later = model.get_submodule(f"{blocks}.{N_LAYERS - 1}")
    handle = later.register_forward_pre_hook(count)
    try:
        with torch.no_grad(), capture(model, ["blocks.0.hook_resid_post", "blocks.1.hook_attn_out"]) as cap:
            assert cap.run(input_ids=_ids()) is None
        assert calls["later"] == 0
        assert set(cap.activations) == {"blocks.0.hook_resid_post", "blocks.1.hook_attn_out"}
        with torch.no_grad(), capture(model, ["blocks.0.hook_resid_post"], stop_after_last=False) as cap:
            assert cap.run(input_ids=_ids()) is not None
        assert calls["later"] == 1
    finally:
        handle.remove()


def test_stop_at_input_hook_never_runs_that_block(models: dict[str, nn.Module]) -> None:
    model = models["llama"]
    calls = []
    handle = model.get_submodule("model.layers.1.self_attn").register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            acts = run_with_capture(model, ["blocks.1.hook_resid_pre"], input_ids=_ids())
    finally:
        handle.remove()
    assert calls == []
    assert acts["blocks.1.hook_resid_pre"].shape == (2, 7, 32)


def test_capture_works_when_calling_the_model_directly(models: dict[str, nn.Module]) -> None:
    model = models["gpt2"]
    ids = _ids()
    with torch.no_grad(), capture(model, ["blocks.1.hook_resid_post"]) as cap:
        model(input_ids=ids)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(cap["blocks.1.hook_resid_post"], hidden[2])
    # the model still works normally afterwards (HF's own output capture was reset)
    assert len(hidden) == N_LAYERS + 1


def test_module_path_hooks_capture_that_modules_output(models: dict[str, nn.Module]) -> None:
    model = models["gpt2"]
    ids = _ids()
    seen = {}
    handles = [
        model.get_submodule("transformer.h.1.mlp.c_fc").register_forward_hook(
            lambda m, a, out: seen.__setitem__("fc", out.detach())
        ),
        model.get_submodule("transformer.h.1.attn").register_forward_hook(
            lambda m, a, out: seen.__setitem__("attn", out[0].detach())
        ),
    ]
    try:
        with torch.no_grad():
            acts = run_with_capture(model, ["transformer.h.1.mlp.c_fc", "transformer.h.1.attn"], input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(acts["transformer.h.1.mlp.c_fc"], seen["fc"])
    torch.testing.assert_close(acts["transformer.h.1.attn"], seen["attn"])
    point = resolve_hook(model, "transformer.h.1.mlp.c_fc")
    assert point.kind == "module" and point.layer == 1
    assert acts["transformer.h.1.mlp.c_fc"].shape[-1] == 4 * 32


def test_wrong_hook_name_lists_valid_ones_compactly(models: dict[str, nn.Module]) -> None:
    model = models["llama"]
    with pytest.raises(ValueError) as err:
        resolve_hook(model, "blocks.7.hook_resid_post")
    message = str(err.value)
    assert "blocks.{0..2}." in message and "hook_resid_pre" in message and "hook_mlp_out" in message
    assert "model.layers.0." in message and "\n" not in message
    with pytest.raises(ValueError):
        resolve_hook(model, "model.layers.0.nonexistent")
    with pytest.raises(ValueError, match="resid_mid"):
        resolve_hook(FAMILIES["neox_parallel"][0](), "blocks.0.hook_resid_mid")


def test_list_hook_points_can_include_every_module(models: dict[str, nn.Module]) -> None:
    model = models["gpt2"]
    names = {p.name for p in list_hook_points(model, include_modules=True)}
    assert "transformer.h.0.mlp.c_fc" in names and "blocks.0.hook_resid_post" in names
    # the block modules themselves are already the standard resid_post points
    assert "transformer.h.0" not in names


def test_patch_with_wrong_shape_is_a_clear_error(models: dict[str, nn.Module]) -> None:
    model = models["gpt2"]
    with patch_activation(model, "blocks.0.hook_resid_post", lambda x: x[..., :3]), pytest.raises(ValueError) as err:
        _logits(model, _ids())
    assert "blocks.0.hook_resid_post" in str(err.value) and "(2, 7, 32)" in str(err.value)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3_text", "neox_parallel"])
@pytest.mark.parametrize("kind", ["resid_post", "attn_out"])
def test_patch_applies_at_every_generation_step_with_kv_cache(
    models: dict[str, nn.Module], family: str, kind: str
) -> None:
    model = models[family]
    steer = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 5
    prompt = _ids(batch=1, seq=5)
    name = f"blocks.1.hook_{kind}"
    lengths: list[int] = []

    def add(x: torch.Tensor) -> torch.Tensor:
        lengths.append(x.shape[1])
        return x + steer

    def generate(use_cache: bool) -> torch.Tensor:
        with torch.no_grad():
            out = model.generate(
                prompt,
                max_new_tokens=4,
                min_new_tokens=4,  # the end-of-text logit is masked so every run takes four steps
                do_sample=False,
                use_cache=use_cache,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=0,
            )
        return torch.stack(out.scores)

    clean = generate(use_cache=True)
    with patch_activation(model, name, add):
        cached = generate(use_cache=True)
    assert lengths == [5, 1, 1, 1]  # prefill, then one token per step
    with patch_activation(model, name, add):
        uncached = generate(use_cache=False)
    torch.testing.assert_close(cached, uncached, rtol=1e-4, atol=1e-4)
    finite = torch.isfinite(clean)
    for step in range(4):
        assert (cached[step] - clean[step])[finite[step]].abs().max() > 1e-3
