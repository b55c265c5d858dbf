"""The inference ops, run in-process on a registered tiny model + planted SAE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mistudio_tui.inference.server import InferenceServer, RequestContext
from mistudio_tui.ml.analysis.ablation import ablate_features, next_token_losses
from mistudio_tui.ml.models.hooks import capture, patch_activation
from mistudio_tui.ml.steering.interventions import Intervention, StepState
from tests.unit.steering_world import HOOK, PLANTED, TRANSCODER_IN, make_world

PROMPT = "once upon a time"


@pytest.fixture
def world(mistudio_home: Path, tiny_lm_dir: Path):
    return make_world(mistudio_home, tiny_lm_dir)


@pytest.fixture
def server(world, mistudio_home: Path) -> InferenceServer:
    return InferenceServer(mistudio_home)


def _ctx() -> RequestContext:
    return RequestContext(lambda: False)


def test_feature_activations_and_top_features_agree(server, world) -> None:
    acts = server.op_feature_activations(_ctx(), world.training_id, PROMPT, list(range(16)))
    top = server.op_top_features(_ctx(), str(world.training_id), PROMPT, k=3)
    assert acts["tokens"] == top["tokens"]
    assert "".join(acts["tokens"]) == PROMPT
    for pos, ranked in enumerate(top["top"]):
        column = sorted(((acts["activations"][f][pos], f) for f in range(16)), reverse=True)
        expected = [[f, v] for v, f in column[:3] if v > 0]
        assert [f for f, _ in ranked] == [f for f, _ in expected]
        assert [v for _, v in ranked] == pytest.approx([v for _, v in expected])


def test_generate_streams_every_variant_and_strength_zero_is_identical(server, world) -> None:
    partials: list[dict] = []
    result = server.op_generate(
        _ctx(), partials.append, world.training_id, PROMPT,
        interventions=[{"feature": PLANTED, "strength": 1.0}], strengths=[0.0, 50.0],
        temperature=1.0, top_p=0.95, max_tokens=8, seed=3,
    )  # fmt: skip
    texts = result["texts"]
    assert set(texts) == {"normal", "steered:0", "steered:50"}
    assert texts["steered:0"] == texts["normal"]
    assert texts["steered:50"] != texts["normal"]
    for variant, text in texts.items():
        assert "".join(p["token"] for p in partials if p["variant"] == variant) == text
    scale = result["scales"][PLANTED]
    assert scale["max_act"] > 0 and scale["relative_norm"] == pytest.approx(scale["added_norm"] / scale["typical_norm"])


def test_greedy_steering_on_the_planted_feature_writes_its_token(server, world) -> None:
    max_act = server.op_scales(_ctx(), world.training_id, [PLANTED])[PLANTED]["max_act"]
    result = server.op_generate(
        _ctx(), lambda _: None, world.training_id, PROMPT,
        interventions=[{"feature": PLANTED, "strength": 10.0 / max_act}], temperature=0.0, max_tokens=6,
    )  # fmt: skip
    target = server.token_strings(server.pair(world.training_id), [world.target_token])[0]
    assert result["tokens"][f"steered:{10.0 / max_act:g}"] == [target] * 6
    assert result["texts"]["normal"] != result["texts"][f"steered:{10.0 / max_act:g}"]


def test_ablation_matches_a_direct_computation(server, world) -> None:
    pair = server.pair(world.training_id)
    ids, _ = server.encode(pair, PROMPT)
    with capture(pair.loaded.model, [HOOK]) as cap:
        cap.run(input_ids=ids)
        x = cap[HOOK]
    codes = pair.sae.encode(x)
    feature = int(codes[0, 1:].amax(0).argmax())  # the feature most active on the text
    x_ablated = x.clone()
    x_ablated[0, 1:] -= codes[0, 1:, feature, None] * pair.sae.W_dec[feature]
    with torch.no_grad():
        clean = pair.loaded.model(input_ids=ids).logits
        with patch_activation(pair.loaded.model, HOOK, lambda _: x_ablated):
            ablated = pair.loaded.model(input_ids=ids).logits
    result = server.op_ablate(_ctx(), world.training_id, PROMPT, [feature])
    assert result["loss_clean"] == pytest.approx(float(next_token_losses(clean, ids).mean()), rel=1e-5)
    assert result["loss_ablated"] == pytest.approx(float(next_token_losses(ablated, ids).mean()), rel=1e-5)
    assert result["n_active"] == int((codes[0, 1:, feature] > 0).sum())
    active = (codes[0, :, feature] > 0).clone()
    active[0] = False
    mean = (ablated - clean)[0][active].mean(0)
    assert [t for _, t, _ in result["promoted"][:3]] == mean.topk(3).indices.tolist()
    direct = ablate_features(pair.loaded.model, pair.sae, HOOK, ids, [feature], "clamp", 0.0)
    assert direct.loss_ablated == pytest.approx(result["loss_ablated"])


def test_decoder_map_similar_and_cooccurrence(server, world) -> None:
    mapped = server.op_decoder_map(_ctx(), world.training_id, method="pca")
    assert mapped["method"] == "pca" and len(mapped["coords"]) == 16 and all(len(c) == 2 for c in mapped["coords"])
    similar = server.op_similar(_ctx(), world.training_id, PLANTED, k=4)
    cos = [c for _, c in similar["similar"]]
    assert len(cos) == 4 and cos == sorted(cos, reverse=True) and PLANTED not in [f for f, _ in similar["similar"]]
    texts = [PROMPT, "the cat sat"]
    co = server.op_cooccurrence(_ctx(), world.training_id, texts, [0, 1], add_partners=3)
    group = co["features"]
    assert group[:2] == [0, 1] and len(group) <= 5
    assert group[2:] == [p["id"] for p in co["partners"][0][: len(group) - 2]]
    acts = [server.op_feature_activations(_ctx(), world.training_id, t, group)["activations"] for t in texts]
    for a, fa in enumerate(group):
        for b, fb in enumerate(group):
            both = sum(x > 0 and y > 0 for r in acts for x, y in zip(r[fa], r[fb], strict=True))
            assert co["counts"][a][b] == both


def test_errors_name_what_is_wrong(server, world) -> None:
    with pytest.raises(LookupError, match="no training with id or name '999'"):
        server.op_top_features(_ctx(), 999, PROMPT)
    with pytest.raises(ValueError, match="out of range"):
        server.op_feature_activations(_ctx(), world.training_id, PROMPT, [16])
    with pytest.raises(ValueError, match="empty"):
        server.op_top_features(_ctx(), world.training_id, "")


def test_strength_units_come_from_the_feature_set_when_there_is_one(server, world) -> None:
    from mistudio_tui.db.models import Feature, FeatureSet

    prompt_scale = server.op_scales(_ctx(), world.training_id, [PLANTED])[PLANTED]
    assert prompt_scale["source"] == "prompt"
    fset = FeatureSet.create(name="fs", training=world.training_id, d_sae=16, status="ready")
    Feature.create(feature_set=fset, index=PLANTED, max_activation=3.25)
    fresh = InferenceServer(server.paths.home)
    scale = fresh.op_scales(_ctx(), world.training_id, [PLANTED])[PLANTED]
    assert scale["source"] == "feature set" and scale["max_act"] == 3.25
    assert scale["added_norm"] == pytest.approx(3.25 * scale["decoder_norm"])
    fn_result = fresh.op_generate(
        _ctx(), lambda _: None, world.training_id, PROMPT,
        interventions=[{"feature": PLANTED, "strength": 2.0}], temperature=0.0, max_tokens=2,
    )  # fmt: skip
    direct = fn_result["scales"][PLANTED]
    assert direct["added_norm"] == pytest.approx(2.0 * 3.25 * direct["decoder_norm"])


def test_a_transcoder_steers_at_its_output_hook(mistudio_home: Path, tiny_lm_dir: Path) -> None:
    world = make_world(mistudio_home, tiny_lm_dir, transcoder=True)
    server = InferenceServer(mistudio_home)
    pair = server.pair(world.training_id)
    assert pair.hook == TRANSCODER_IN and pair.hook_out == HOOK
    model, W_dec = pair.loaded.model, pair.sae.W_dec.detach()
    ids, _ = server.encode(pair, PROMPT)
    with capture(model, [TRANSCODER_IN, HOOK]) as cap:
        cap.run(input_ids=ids)
        codes, out = pair.sae.encode(cap[TRANSCODER_IN]), cap[HOOK]

    def logits_under(patch) -> torch.Tensor:
        with torch.no_grad(), patch():
            return model(input_ids=ids).logits

    def logits_with_output(new_out: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), patch_activation(model, HOOK, lambda _: new_out):
            return model(input_ids=ids).logits

    added = server._steering_patch(pair, [Intervention(PLANTED, 3.0)], {PLANTED: 1.0}, StepState())
    shifted = out.clone()
    shifted[:, 1:] += 3.0 * W_dec[PLANTED]  # the decoder row, at the output hook, past BOS
    torch.testing.assert_close(logits_under(added), logits_with_output(shifted))
    # a clamp reads the codes at the input hook and moves the output hook by the changed codes' decoder rows
    clamp = server._steering_patch(pair, [Intervention(PLANTED, 2.0, "clamp")], {PLANTED: 1.0}, StepState())
    clamped = out.clone()
    clamped[:, 1:] += (2.0 - codes[:, 1:, PLANTED, None]) * W_dec[PLANTED]
    torch.testing.assert_close(logits_under(clamp), logits_with_output(clamped))
    max_act = server.op_scales(_ctx(), world.training_id, [PLANTED])[PLANTED]["max_act"]
    result = server.op_generate(
        _ctx(), lambda _: None, world.training_id, PROMPT,
        interventions=[{"feature": PLANTED, "strength": 10.0 / max_act}], temperature=0.0, max_tokens=4,
    )  # fmt: skip
    target = server.token_strings(pair, [world.target_token])[0]
    assert result["tokens"][f"steered:{10.0 / max_act:g}"] == [target] * 4
    with pytest.raises(ValueError, match="transcoder"):
        server.op_ablate(_ctx(), world.training_id, PROMPT, [PLANTED])
