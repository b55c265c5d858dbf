"""Pilot tests of review papercuts: label provenance in the feature detail, Steering following the browsed SAE,
and a new training run selected in the list."""

from __future__ import annotations

import os
import time
from typing import Any

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import features as fq
from mistudio_tui.db.jobs import create_job
from mistudio_tui.db.models import FeatureSet, Training
from mistudio_tui.services.labeling import select_features
from mistudio_tui.ui.modals.form import FormModal
from tests.ui.populate import WORDS, populate, populate_runs, write_feature_store


async def wait_for(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def detail_text(app: MiStudioApp) -> str:
    return str(app.screen.query_one("#feature-detail").render())


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


# --- the feature detail says what the table shows ---------------------------------------------------------------
async def test_detail_shows_the_auto_technical_label_with_its_provenance(studio) -> None:
    ids = populate(studio.paths.home)
    fq.add_label(ids["training"], 2, semantic="Sitting down.", method="llm", model="judge")  # no technical name
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        screen.jump_to(0)
        await wait_for(pilot, lambda: "feature 0" in detail_text(app))
        row = screen.table.row(screen.table.cursor)
        assert row.index == 0 and row.technical == f'tok:"{WORDS[0]}"' and not row.semantic
        text = detail_text(app)
        assert row.technical in text and "auto" in text
        assert "[technical · auto]" in text and "unlabelled: no semantic label" in text

        screen.jump_to(2)  # an LLM label with only a description: the table keeps the auto technical name
        await wait_for(pilot, lambda: "feature 2" in detail_text(app))
        row = screen.table.row(screen.table.cursor)
        text = detail_text(app)
        assert row.technical == f'tok:"{WORDS[2]}"' and row.technical in text and "[technical · auto]" in text
        assert "Sitting down." in text and "[llm judge" in text and "unlabelled" not in text

        screen.jump_to(1)  # a manual label names its own technical label: no 'auto'
        await wait_for(pilot, lambda: "feature 1" in detail_text(app))
        text = detail_text(app)
        assert "cat" in text and "auto" not in text and "[manual" in text


def test_labelled_means_a_semantic_label_in_the_filter_and_the_labeling_selection(studio) -> None:
    ids = populate(studio.paths.home)
    fset = FeatureSet.get_by_id(ids["featureset"])
    auto_only = {f.index for f in fq.feature_query(fset.id) if f.technical_label and not f.semantic_label}
    assert 0 in auto_only
    labelled = {f.index for f in fq.feature_query(fset.id, fq.parse_filter("labelled"))}
    unlabelled = {f.index for f in fq.feature_query(fset.id, fq.parse_filter("unlabelled"))}
    assert labelled == {1} and auto_only <= unlabelled and 1 not in unlabelled
    alive_unlabelled = unlabelled & {f.index for f in fq.feature_query(fset.id, fq.parse_filter("alive"))}
    assert set(select_features(fset, "unlabeled")) == alive_unlabelled and 0 in alive_unlabelled
    assert "semantic" in fq.FILTER_HELP


# --- Steering takes the SAE of the feature set browsed ------------------------------------------------------------
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


# --- a new run is selected in the runs list -------------------------------------------------------------------------
async def test_a_new_run_is_selected_when_it_appears(studio, monkeypatch) -> None:
    populate_runs(studio.paths.home)

    def queue_only(kind: str, params: dict, title: str = "", resource: Any = None):  # no worker process
        return create_job(kind, title, params, resource, os.getpid(), studio.paths.dir("logs"))

    monkeypatch.setattr(studio.runner, "submit", queue_only)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        first = screen.table.selected_id
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, FormModal))
        app.screen.query_one("#field-name").value = "fresh-run"
        await pilot.press("ctrl+s")
        fresh = Training.get_or_none(Training.name == "fresh-run")
        await wait_for(pilot, lambda: app.screen is screen and fresh is not None and fresh.id in screen.shown_ids)
        await wait_for(pilot, lambda: screen.table.selected_id == fresh.id)
        assert first != fresh.id and "fresh-run" in str(screen.query_one("#training-detail").render())
