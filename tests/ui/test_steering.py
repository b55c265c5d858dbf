"""Pilot tests of the Steering screen, with a fake inference session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import SteeringPreset
from mistudio_tui.services import steering as svc
from mistudio_tui.ui.screens.steering import SteeringScreen
from mistudio_tui.ui.widgets.steering_plots import CooccurrenceHeatmap, DecoderMap
from tests.ui.populate import populate
from tests.ui.steering_fake import FakeSession


def _text(screen: SteeringScreen, wid: str) -> str:
    return str(screen.query_one(f"#{wid}").content)


async def _open(pilot, fake: FakeSession) -> SteeringScreen:
    await pilot.press("5")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SteeringScreen)
    screen._session = fake
    return screen


async def _fill(pilot, screen: SteeringScreen, features: str, strengths: str, prompt: str) -> None:
    screen.query_one("#steer-features").value = features
    screen.query_one("#steer-strengths").value = strengths
    screen.query_one("#steer-prompt").value = prompt
    screen.query_one("#steer-prompt").focus()
    await pilot.pause()


@pytest.fixture
def app(studio):
    ids = populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    app.ids = ids
    return app


async def test_run_streams_normal_and_steered_side_by_side(app) -> None:
    fake = FakeSession()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, fake)
        await _fill(pilot, screen, "3", "0, 4", "Once")
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        op, params = fake.calls[-1]
        assert op == "generate" and params["strengths"] == [0.0, 4.0]
        assert params["interventions"] == [{"feature": 3, "strength": 1.0, "method": "add"}]
        assert _text(screen, "steer-normal") == "Once the cat sat"
        steered = _text(screen, "steer-steered")
        assert "[steered:0]\nOnce the cat sat" in steered and "[steered:4]\nOnce dog dog" in steered
        assert "#3: max act 2.5, adds 0.4× typical norm" in _text(screen, "steer-status")


async def test_bad_input_is_reported_in_the_status_line(app) -> None:
    fake = FakeSession()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, fake)
        await _fill(pilot, screen, "99", "2", "x")
        await pilot.press("enter")
        assert "feature 99 is out of range" in _text(screen, "steer-status")
        await _fill(pilot, screen, "3", "lots", "x")
        await pilot.press("enter")
        assert "strength 'lots' is not a number" in _text(screen, "steer-status")
        await _fill(pilot, screen, "3", "2", "")
        await pilot.press("ctrl+r")
        assert "type a prompt" in _text(screen, "steer-status")
        assert fake.calls == []


async def test_add_feature_save_and_load_a_preset_and_export(app, tmp_path: Path) -> None:
    fake = FakeSession()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, fake)
        screen.add_feature(app.ids["training"], 7)
        screen.add_feature(app.ids["training"], 2)
        assert screen.query_one("#steer-features").value == "7, 2"
        assert screen.query_one("#steer-strengths").value == "4"
        screen.query_one("#steer-prompt").value = "Hello"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"mine", "enter")
        await pilot.pause()
        preset = SteeringPreset.get(SteeringPreset.name == "mine")
        assert preset.config["features"] == [7, 2] and preset.config["prompt"] == "Hello"
        screen.query_one("#steer-features").value = ""
        screen.query_one("#steer-preset").value = preset.id
        await pilot.pause()
        assert screen.query_one("#steer-features").value == "7, 2"
        screen.query_one("#steer-prompt").focus()
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        target = tmp_path / "cmp.json"
        pilot.app.screen.query_one("#field-path").value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.is_file() and '"steered:4": " dog dog"' in target.read_text()


async def test_analysis_tab_shows_ablation_cooccurrence_and_the_map(app) -> None:
    fake = FakeSession()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, fake)
        await _fill(pilot, screen, "3, 5", "2", "Once")
        screen.query_one("#steer-tabs").active = "tab-analysis"
        await pilot.pause()
        await pilot.click("#an-ablate")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.calls[-1] == ("ablate", {"training_id": app.ids["training"], "text": "Once", "features": [3, 5]})
        assert "loss 2.0000 → 2.5000 (+0.5000)" in _text(screen, "an-result")
        await pilot.click("#an-cooccurrence")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert "#3 fires with: #11 (0.50)" in _text(screen, "an-result")
        await pilot.click("#an-map")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert "12 decoder directions mapped by pca" in _text(screen, "an-result")
        assert screen.query_one(CooccurrenceHeatmap) and screen.query_one(DecoderMap)
        drawn = screen.query_one(DecoderMap).groups_drawn  # coloured by density band by default
        assert drawn and all(any(band in g for band, _ in svc.DENSITY_BANDS) for g in drawn)
        assert sum(int(g.rsplit("(", 1)[1].rstrip(")").replace(",", "")) for g in drawn) == 12
        screen.query_one("#an-map-colour").value = "label"
        await pilot.pause()
        assert {g.split(" (")[0] for g in screen.query_one(DecoderMap).groups_drawn} <= {"labelled", "unlabelled"}
        screen.query_one("#an-map-colour").value = "none"
        await pilot.pause()
        assert screen.query_one(DecoderMap).groups_drawn == []


def test_map_groups_split_features_by_density_band_and_label(app) -> None:
    from mistudio_tui.db.models import Feature

    training = app.ids["training"]
    by_density = svc.map_groups(training, "density")
    rows = list(Feature.select().where(Feature.feature_set == svc.newest_feature_set(training)))
    assert sorted(i for group in by_density.values() for i in group) == sorted(f.index for f in rows)
    for f in rows:
        expected = (
            "dead"
            if f.dead or f.density <= 0
            else next(name for name, upper in svc.DENSITY_BANDS[1:] if f.density < upper)
        )
        assert f.index in by_density[expected]
    by_label = svc.map_groups(training, "label")
    assert set(by_label["labelled"]) == {f.index for f in rows if f.semantic_label}
    assert svc.map_groups(training, "none") == {}
    with pytest.raises(ValueError, match="colour the map by one of"):
        svc.map_groups(training, "size")


async def test_add_feature_right_after_switching_mode(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.switch_mode("steering")
        screen = pilot.app.screen
        screen.add_feature(app.ids["training"], 5)
        await pilot.pause()
        assert screen.query_one("#steer-features").value == "5"
        assert screen.training_id == app.ids["training"]
        screen.add_feature(999, 1)
        assert "training #999 cannot be steered" in _text(screen, "steer-status")
        assert screen.query_one("#steer-features").value == "5"


async def test_absolute_coefficients_and_a_never_fired_feature_are_said(app) -> None:
    fake = FakeSession()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, fake)
        await _fill(pilot, screen, "3", "2", "Once")
        screen.query_one("#steer-units").value = "absolute"
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.calls[-1][1]["units"] == "absolute"
        screen.query_one("#steer-units").value = "max"
        await _fill(pilot, screen, "3", "1e9", "Once")
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert any("strength 1e+09" in n.message for n in app._notifications)
    never = {"scales": {3: {"max_act": 1.0, "relative_norm": 0.4, "never_fired": True, "source": "prompt"}}}
    summary = SteeringScreen.scale_summary(never)
    assert "feature 3 never fired (prompt)" in summary and "units: absolute coefficient" in summary
    sweep = {
        "scales": {3: {"max_act": 2.0, "relative_norm": 0.5}},
        "variant_scales": {"steered:1": {3: {"relative_norm": 0.5}}, "steered:4": {3: {"relative_norm": 2.0}}},
    }
    assert "adds 0.5× at 1, 2× at 4 typical norm" in SteeringScreen.scale_summary(sweep)
