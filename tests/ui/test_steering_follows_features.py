"""Steering takes the SAE of the feature set browsed (and keeps its own choice when opened from elsewhere)."""

from __future__ import annotations

from typing import Any

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import features as fq
from mistudio_tui.db.models import FeatureSet, Training
from tests.ui.pilot import wait_for
from tests.ui.populate import populate, write_feature_store


def second_sae(home: Any, ids: dict[str, int]) -> dict[str, int]:
    """A newer steerable SAE on the same model with its own feature set (the newest of each)."""
    first = Training.get_by_id(ids["training"])
    newer = Training.create(
        name="newer-run", activation_set=first.activation_set, model=first.model, tokenization=first.tokenization,
        architecture="topk", hook_name=first.hook_name, d_in=32, d_sae=12, status="completed",
        path=str(home / "saes" / "2"),
    )  # fmt: skip
    folder = home / "features" / "2"
    write_feature_store(folder)
    fset = FeatureSet.create(
        name="newer-features", training=newer, d_sae=12, n_tokens=80, n_alive=11, status="ready", path=str(folder)
    )
    fq.bulk_insert_features(fset, [{"index": i, "density": 0.1} for i in range(12)])
    return {"old_training": first.id, "old_set": ids["featureset"], "new_training": newer.id, "new_set": fset.id}


async def test_steering_follows_the_browsed_sae_from_features_and_keeps_its_own_choice_otherwise(studio) -> None:
    ids = second_sae(studio.paths.home, populate(studio.paths.home))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        steering = app.screen
        assert steering.training_id == ids["new_training"]  # opened directly: the newest SAE
        steering.query_one("#steer-features").value = "4"

        await pilot.press("4")
        await pilot.pause()
        app.screen.query_one("#featureset-select").value = ids["old_set"]
        await pilot.pause()
        await pilot.press("5")  # from Features: the browsed set's SAE
        await wait_for(pilot, lambda: steering.training_id == ids["old_training"])
        assert steering.query_one("#steer-features").value == ""  # feature 4 of the other SAE was dropped

        steering.select_training(ids["new_training"])  # the user picks another SAE here
        await pilot.press("3")
        await pilot.pause()
        await pilot.press("5")  # opened from elsewhere: its own last choice
        await pilot.pause(0.2)
        assert steering.training_id == ids["new_training"]


async def test_steer_this_feature_uses_the_browsed_sae_on_first_open(studio) -> None:
    ids = second_sae(studio.paths.home, populate(studio.paths.home))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        features = app.screen
        features.query_one("#featureset-select").value = ids["old_set"]
        await pilot.pause()
        features.jump_to(3)
        await pilot.pause()
        await pilot.press("x")
        await wait_for(pilot, lambda: app.current_mode == "steering" and app.screen.query("#steer-features"))
        steering = app.screen
        await wait_for(pilot, lambda: steering.query_one("#steer-features").value == "3")
        assert steering.training_id == ids["old_training"]
