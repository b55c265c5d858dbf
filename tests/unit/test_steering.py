"""Steering ML: planted-feature direction, clamp identity, KV cache agreement, strength 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mistudio_tui.ml.models.hooks import capture, patch_activation
from mistudio_tui.ml.models.loading import load_model
from mistudio_tui.ml.steering.generate import Sampling, generate_ids
from mistudio_tui.ml.steering.interventions import Intervention, StepState, clamp_codes, steering_fn
from tests.unit.steering_world import HOOK, PLANTED, build_sae

TARGET = 40


@pytest.fixture(scope="module")
def setup(tiny_lm_dir: Path):
    loaded = load_model(tiny_lm_dir, device="cpu")
    sae = build_sae(tiny_lm_dir, TARGET)
    ids = torch.tensor([[loaded.tokenizer.bos_token_id, *loaded.tokenizer("once upon a time")["input_ids"]]])
    return loaded, sae, ids


def _next_probs(loaded, ids, fn=None) -> torch.Tensor:
    with torch.no_grad():
        if fn is None:
            logits = loaded.model(input_ids=ids).logits
        else:
            with patch_activation(loaded.model, HOOK, fn):
                logits = loaded.model(input_ids=ids).logits
    return logits[0, -1].softmax(-1)


def test_adding_the_planted_feature_promotes_its_token(setup) -> None:
    loaded, sae, ids = setup
    base = _next_probs(loaded, ids)
    probs = [base[TARGET]]
    for strength in (2.0, 8.0):
        fn = steering_fn(sae, [Intervention(PLANTED, strength)], {PLANTED: 1.0}, StepState())
        probs.append(_next_probs(loaded, ids, fn)[TARGET])
    assert probs[0] < probs[1] < probs[2]
    strong = steering_fn(sae, [Intervention(PLANTED, 8.0)], {PLANTED: 1.0}, StepState())
    assert int(_next_probs(loaded, ids, strong).argmax()) == TARGET
    negative = steering_fn(sae, [Intervention(PLANTED, -8.0)], {PLANTED: 1.0}, StepState())
    assert _next_probs(loaded, ids, negative)[TARGET] < base[TARGET]


def test_steering_leaves_bos_and_unselected_positions_alone(setup) -> None:
    _, sae, ids = setup
    state = StepState(prompt_len=ids.shape[1], positions="generated")
    fn = steering_fn(sae, [Intervention(PLANTED, 5.0)], {PLANTED: 1.0}, state)
    x = torch.randn(1, ids.shape[1], sae.d_in)
    assert torch.equal(fn(x), x)  # every position of the prompt pass is a prompt position
    state.positions = "all"
    out = fn(x)
    assert torch.equal(out[0, 0], x[0, 0])
    assert torch.allclose(out[0, 1:] - x[0, 1:], 5.0 * sae.W_dec[PLANTED].detach().expand(ids.shape[1] - 1, -1))


def test_clamping_a_feature_to_its_own_value_reproduces_the_activation(setup) -> None:
    loaded, sae, ids = setup
    with capture(loaded.model, [HOOK]) as cap:
        cap.run(input_ids=ids)
        x = cap[HOOK]
    codes = sae.encode(x)
    where = torch.ones(x.shape[:-1], dtype=torch.bool)
    same = clamp_codes(sae, x, {f: codes[..., f] for f in range(sae.d_sae)}, where)
    assert torch.allclose(same, x, atol=1e-6)
    fn = lambda a: clamp_codes(sae, a, {PLANTED: codes[..., PLANTED]}, where)  # noqa: E731
    assert torch.allclose(_next_probs(loaded, ids, fn), _next_probs(loaded, ids), atol=1e-6)
    # clamping to another value does change the output, by exactly the decoder direction
    moved = clamp_codes(sae, x, {PLANTED: 4.0}, where)
    expected = x + (4.0 - codes[..., PLANTED]).unsqueeze(-1) * sae.W_dec[PLANTED]
    assert torch.allclose(moved, expected, atol=1e-5)


@pytest.mark.parametrize(("method", "positions"), [("add", "all"), ("add", "generated"), ("clamp", "prompt")])
def test_cached_and_uncached_steered_generation_agree(setup, method: str, positions: str) -> None:
    loaded, sae, ids = setup
    sampling = Sampling(max_tokens=10, temperature=0.0)
    runs = []
    for use_cache in (True, False):
        state = StepState(positions=positions)
        fn = steering_fn(sae, [Intervention(PLANTED, 1.5, method)], {PLANTED: 1.0}, state)
        patch = lambda fn=fn: patch_activation(loaded.model, HOOK, fn)  # noqa: E731
        runs.append(list(generate_ids(loaded.model, ids, sampling, state, patch, use_cache=use_cache)))
    assert runs[0] == runs[1]


def test_generated_tokens_are_steered_with_the_kv_cache(setup) -> None:
    loaded, sae, ids = setup
    sampling = Sampling(max_tokens=6, temperature=0.0)
    state = StepState(positions="generated")
    fn = steering_fn(sae, [Intervention(PLANTED, 10.0)], {PLANTED: 1.0}, state)
    patch = lambda: patch_activation(loaded.model, HOOK, fn)  # noqa: E731
    steered = list(generate_ids(loaded.model, ids, sampling, state, patch))
    normal = list(generate_ids(loaded.model, ids, sampling))
    # the first token comes from the unsteered prompt pass; every later one from a steered length-1 step
    assert steered[0] == normal[0]
    assert steered[1:] == [TARGET] * 5


def test_same_seed_gives_same_samples_and_strength_zero_changes_nothing(setup) -> None:
    loaded, sae, ids = setup
    sampling = Sampling(max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    normal = list(generate_ids(loaded.model, ids, sampling))
    assert list(generate_ids(loaded.model, ids, sampling)) == normal
    state = StepState()
    fn = steering_fn(sae, [Intervention(PLANTED, 0.0)], {PLANTED: 3.0}, state)
    patch = lambda: patch_activation(loaded.model, HOOK, fn)  # noqa: E731
    assert list(generate_ids(loaded.model, ids, sampling, state, patch)) == normal
    other = list(generate_ids(loaded.model, ids, Sampling(max_tokens=12, temperature=1.0, top_p=0.9, seed=8)))
    assert other != normal


def test_bad_settings_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="method"):
        Intervention(0, 1.0, "multiply")
    with pytest.raises(ValueError, match="positions"):
        StepState(positions="middle")
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0)
    with pytest.raises(ValueError, match="out of range"):
        Intervention.from_dict({"feature": 99, "strength": 1}, d_sae=16)
