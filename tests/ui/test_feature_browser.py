"""Pilot tests of the feature browser: browse, sort, filter, search, jump, bookmark, detail, labels, labeling."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import features as fq
from mistudio_tui.db.models import Feature, FeatureLabel, FeatureSet, Job, LabelingJob, Training
from mistudio_tui.ui.modals.fire_here import FireHereModal
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.modals.label_edit import LabelHistoryModal
from mistudio_tui.ui.modals.labeling import LabelingRunsModal
from mistudio_tui.ui.screens import features as features_screen
from mistudio_tui.ui.widgets.feature_table import MAX_PAGES, PAGE_ROWS, FeatureTable
from tests.ui.populate import WORDS, populate, write_feature_store


def text_of(app: MiStudioApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def open_features(pilot: Any) -> FeatureTable:
    await pilot.press("4")
    await pilot.pause()
    return pilot.app.screen.query_one("#features-table", FeatureTable)


async def settle(pilot: Any, delay: float = 0.25) -> None:
    await pilot.pause(delay)
    await pilot.pause()


async def wait_for(pilot: Any, condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.1)


def big_feature_set(home: Path, n: int) -> FeatureSet:
    """A feature set with `n` rows (density falling with index, every 7th dead), stored in bulk."""
    fset = FeatureSet.get()
    big = FeatureSet.create(
        name="big", training=fset.training_id, d_sae=n, n_tokens=1000, status="ready", path=fset.path
    )
    fq.bulk_insert_features(
        big,
        (
            {
                "index": i,
                "density": 0.0 if i % 7 == 0 else 1.0 / (i + 2),
                "max_activation": float(i % 100),
                "mean_activation": 1.0,
                "top_tokens": f" tok{i % 50}",
                "dead": i % 7 == 0,
            }
            for i in range(n)
        ),
    )
    return big


async def test_browse_keys_and_sorting(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        assert table.has_focus
        assert table.row_count == 12
        first = table.selected_id
        assert f"feature {first}" in text_of(app, "#feature-detail")
        await pilot.press("j")
        await pilot.pause()
        second = table.selected_id
        assert second != first and f"feature {second}" in text_of(app, "#feature-detail")
        await pilot.press("G")
        await settle(pilot)  # the detail pane follows a held key at most every DETAIL_EVERY_S
        assert table.selected_id == 11  # the dead feature sorts last by density
        assert "dead" in text_of(app, "#feature-detail")
        await pilot.press(*"kkkk")
        await settle(pilot)
        assert f"feature {table.selected_id}" in text_of(app, "#feature-detail")
        await pilot.press("g")
        await pilot.pause()
        assert table.selected_id == first
        await pilot.press("pagedown")
        assert table.cursor == 11
        await pilot.press("k", "up")
        assert table.cursor == 9
        await pilot.press("g", "s")  # density -> max activation, largest first
        await pilot.pause()
        assert (table.sort, table.descending) == ("max_activation", True)
        assert [table.row(i).index for i in range(3)] == [10, 9, 8]
        await pilot.press("S")
        await pilot.pause()
        assert [table.row(i).index for i in range(3)] == [11, 0, 1]
        assert "sort max_activation ↑" in text_of(app, "#features-status")
        await pilot.click(FeatureTable, offset=(1, 0))  # the '#' header sorts by index
        await pilot.pause()
        assert table.sort == "index"
        assert [table.row(i).index for i in range(12)] == list(range(12))


async def test_filter_search_jump_and_bookmarks(studio):
    ids = populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        await pilot.press("f", *"dead", "enter")
        await settle(pilot)
        assert table.row_count == 1 and table.selected_id == 11
        await pilot.press("f", *(["backspace"] * 4), *"alive density>0.08")
        await settle(pilot)
        assert table.row_count == 4
        assert {table.row(i).index for i in range(4)} == {0, 3, 6, 9}
        await pilot.press(*"x")  # 'density>0.08x' is not a number: reported, the last good filter stays
        await settle(pilot)
        assert "density>0.08x" in text_of(app, "#features-status")
        assert table.row_count == 4
        await pilot.press(*(["backspace"] * 19), "enter")
        await settle(pilot)
        assert table.row_count == 12
        await pilot.press("slash", *"sat")
        await settle(pilot)
        assert table.row_count == 1 and table.selected_id == 2
        await pilot.press("escape")  # clears the search and returns to the table
        await settle(pilot)
        assert table.has_focus and table.row_count == 12
        await pilot.press("slash", *"word cat")  # a semantic label
        await settle(pilot)
        assert table.selected_id == 1 and "The word cat" in text_of(app, "#feature-detail")
        await pilot.press("escape", "number_sign")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        await pilot.press(*"7", "enter")
        await settle(pilot)
        assert table.selected_id == 7 and "feature 7" in text_of(app, "#feature-detail")
        await pilot.press("f", *"dead", "enter")
        await settle(pilot)
        await pilot.press("colon", *"4", "enter")
        await settle(pilot)
        assert table.selected_id == 4 and table.row_count == 12
        assert app.screen.query_one("#feature-filter").value == ""
        await pilot.press("g", "j", "j")
        marked = table.selected_id
        await pilot.press("b")
        await pilot.pause()
        assert Feature.get(feature_set=ids["featureset"], index=marked).bookmarked
        assert table.row(2).bookmarked
        await pilot.press("f", *"bookmarked", "enter")
        await settle(pilot)
        assert table.row_count == 1 and table.selected_id == marked
        await pilot.press("b")
        await pilot.pause()
        assert not Feature.get(feature_set=ids["featureset"], index=marked).bookmarked


async def test_detail_shows_examples_and_similar_features_jump(studio):
    populate(studio.paths.home)
    write_feature_store(Path(FeatureSet.get().path), similar=True)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        table.jump_to(4)
        await settle(pilot)
        examples = app.screen.query_one("#feature-examples").render()
        assert "top activations" in str(examples)
        assert WORDS[4].strip() in str(examples)
        marked = [span for span in examples.spans if "underline" in str(span.style)]
        assert marked, "the activating token is marked"
        similar = app.screen.query_one("#feature-similar")
        assert similar.display and similar.option_count > 0
        neighbour = int(similar.get_option_at_index(0).id)
        assert neighbour in (3, 5)
        similar.focus()
        similar.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert table.selected_id == neighbour and table.has_focus


async def test_label_edit_and_history_make_current(studio):
    ids = populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        table.jump_to(5)
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        technical = app.screen.query_one("#field-technical")
        technical.value = "period"
        app.screen.query_one("#field-semantic").value = "End of a sentence."
        await pilot.press("ctrl+s")
        await pilot.pause()
        current = [lb for lb in fq.labels_of(ids["training"], 5) if lb.is_current]
        assert [(lb.technical, lb.semantic, lb.method) for lb in current] == [
            ("period", "End of a sentence.", "manual")
        ]
        assert table.row(table.cursor).semantic == "End of a sentence."
        assert "End of a sentence." in text_of(app, "#feature-detail")
        auto = fq.add_label(ids["training"], 5, technical="dot", semantic="A full stop.", method="llm", model="m")
        assert not FeatureLabel.get_by_id(auto.id).is_current  # manual wins
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, LabelHistoryModal)
        history = app.screen.query_one("#label-history")
        assert history.option_count == 2
        history.highlighted = 0  # newest first: the llm label
        await pilot.press("enter")
        await pilot.pause()
        assert FeatureLabel.get_by_id(auto.id).is_current
        assert table.row(table.cursor).semantic == "A full stop."


async def test_labeling_form_starts_a_job_against_a_loopback_server(studio):
    from tests.chat_server import ChatServer, FakeInterpreter

    ids = populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    with ChatServer(FakeInterpreter(claim="numbers")) as server:
        async with app.run_test(size=(120, 40)) as pilot:
            table = await open_features(pilot)
            await pilot.press("L")
            await pilot.pause()
            app.screen.query_one("#field-endpoint").value = "localhost:8000"
            app.screen.query_one("#field-model").value = "m"
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert LabelingJob.select().count() == 0 and Job.select().count() == 0
            assert isinstance(app.screen, FormModal)  # the bad endpoint keeps the form open
            await pilot.press("escape")
            await pilot.pause()
            table.jump_to(3)
            await pilot.press("L")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, FormModal)
            assert form.query_one("#field-selection").value == "3"
            form.query_one("#field-endpoint").value = server.base_url
            form.query_one("#field-model").value = "explainer"
            form.query_one("#field-which").value = "selection"
            form.query_one("#field-selection").value = "3,4"
            form.query_one("#field-price_prompt_per_million").value = "2"
            await pilot.press("ctrl+s")
            await pilot.pause()
            run = LabelingJob.get()
            assert run.features_total == 2 and run.model == "explainer"
            await wait_for(pilot, lambda: Job.get_by_id(run.job_id).status in ("completed", "failed"))
            job = Job.get_by_id(run.job_id)
            assert job.status == "completed", job.error
            assert "tokens" in job.progress_text and "$" in job.progress_text
            labelled = {lb.feature_index for lb in FeatureLabel.select().where(FeatureLabel.labeling_job == run.id)}
            assert labelled == {3, 4}
            assert all(lb.training_id == ids["training"] for lb in FeatureLabel.select())
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, LabelingRunsModal)
            runs = app.screen.query_one("#labeling-runs")
            assert runs.row_count == 1 and "explainer" in str(runs.get_row_at(0))
            await pilot.press("r")  # resume: a new label job that skips the features this run labeled
            await pilot.pause()
            resumed = Job.select().where(Job.kind == "label").order_by(Job.id.desc()).first()
            assert resumed.id != run.job_id and resumed.params["skip"] == [3, 4]
            await wait_for(pilot, lambda: Job.get_by_id(resumed.id).status in ("completed", "failed"))


async def test_65536_features_open_with_a_bounded_number_of_rows(studio):
    populate(studio.paths.home)
    big = big_feature_set(studio.paths.home, 65_536)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        select = app.screen.query_one("#featureset-select")
        select.value = big.id
        await pilot.pause()
        assert table.row_count == 65_536
        await pilot.press("G")
        await pilot.pause()
        assert table.cursor == 65_535 and table.row(table.cursor).dead
        await pilot.press("pageup", "pageup", "g", "j")
        await pilot.pause()
        table.jump_to(40_000)
        await pilot.pause()
        assert table.selected_id == 40_000
        assert table.cached_rows <= MAX_PAGES * PAGE_ROWS
        await pilot.press("f", *"alive", "enter")
        await settle(pilot)
        assert table.row_count == 65_536 - len(range(0, 65_536, 7))
        assert table.selected_id == 40_000  # kept across the filter change
        assert table.cached_rows <= MAX_PAGES * PAGE_ROWS


def app_with_inference(studio, monkeypatch: pytest.MonkeyPatch, infer: Any) -> MiStudioApp:
    """The app, its Features screen answering inference calls with `infer` (self, method, **kwargs)."""
    monkeypatch.setattr(features_screen.FeaturesScreen, "infer", infer)
    return MiStudioApp(studio, offer_sample=False)


async def test_fire_here_and_test_text_use_the_inference_session(studio, monkeypatch: pytest.MonkeyPatch):
    ids = populate(studio.paths.home)
    calls: list[tuple[str, dict[str, Any]]] = []

    def infer(self: Any, method: str, **kwargs: Any) -> dict[str, Any]:
        calls.append((method, kwargs))
        if method == "top_features":
            return {"tokens": [" the", " cat"], "top": [[[0, 1.0]], [[1, 2.0], [6, 0.5]]]}
        return {"tokens": [" the", " cat"], "activations": {kwargs["features"][0]: [0.0, 2.0]}}

    app = app_with_inference(studio, monkeypatch, infer)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, FireHereModal)
        await pilot.press(*"the cat", "enter")
        await wait_for(pilot, lambda: app.screen.query_one("#fire-results").option_count == 3)
        results = app.screen.query_one("#fire-results")
        results.highlighted = 2
        await pilot.press("enter")
        await pilot.pause()
        assert table.selected_id == 6
        assert calls[0] == ("top_features", {"training_id": ids["training"], "text": "the cat", "k": 5})
        await pilot.press("t", *"the cat", "enter")
        await wait_for(pilot, lambda: "max 2" in text_of(app, "#feature-test-result"))
        assert calls[-1][1]["features"] == [6]


def test_parse_filter_terms_and_errors():
    flt = fq.parse_filter("density>1e-3 density<=0.5 labelled score>=0.7 !dead bookmarked", search="cat")
    assert (flt.min_density, flt.max_density, flt.min_score) == (1e-3, 0.5, 0.7)
    assert (flt.labelled, flt.dead, flt.bookmarked, flt.search) == (True, False, True, "cat")
    assert fq.parse_filter("unlabeled").labelled is False
    with pytest.raises(ValueError, match="'densty>1'"):
        fq.parse_filter("densty>1")
    with pytest.raises(ValueError, match="needs a number"):
        fq.parse_filter("score>=high")


def test_score_filter_and_sort_use_label_scores(studio):
    ids = populate(studio.paths.home)
    training = Training.get_by_id(ids["training"])
    for index, score in ((2, 0.9), (3, 0.4), (4, 0.75)):
        fq.add_label(training, index, technical=f"t{index}", semantic=f"s{index}", method="llm", score=score)
    flt = fq.parse_filter("score>=0.7")
    assert [f.index for f in fq.feature_page(ids["featureset"], "label_score", True, flt)] == [2, 4]
    assert fq.toggle_bookmark(ids["featureset"], 2) is True
    assert fq.feature_count(ids["featureset"], fq.parse_filter("bookmarked score>0.8")) == 1


def test_positions_match_pages_in_both_directions_with_ties(studio):
    populate(studio.paths.home)
    big = big_feature_set(studio.paths.home, 3_000)
    flt = fq.parse_filter("alive")
    for sort in ("density", "max_activation", "label_score", "index"):
        for descending in (True, False):
            rows = fq.feature_page(big.id, sort, descending, flt, 1_200, 40)
            positions = [fq.position_of(big.id, r.index, sort, descending, flt) for r in rows]
            assert positions == list(range(1_200, 1_240)), (sort, descending)
    assert fq.position_of(big.id, 7, "density", True, flt) == -1  # dead: filtered out


async def test_fire_here_and_test_text_with_the_real_inference_session(studio, tiny_lm_dir: Path):
    from tests.unit.steering_world import D_SAE, make_world

    world = make_world(studio.paths.home, tiny_lm_dir)
    folder = studio.paths.home / "features" / "planted"
    write_feature_store(folder, d_sae=D_SAE)
    fset = FeatureSet.create(
        name="planted-features", training=world.training_id, d_sae=D_SAE, status="ready", path=str(folder)
    )
    fq.bulk_insert_features(fset, ({"index": i, "density": 0.01 * (i + 1)} for i in range(D_SAE)))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        await pilot.press("w")
        await pilot.pause()
        await pilot.press(*"once upon a time", "enter")

        def status() -> str:
            return text_of(app, "#fire-status")

        await wait_for(pilot, lambda: "tokens" in status() or "⚠" in status(), timeout=240)
        assert "tokens · top" in status(), status()
        results = app.screen.query_one("#fire-results")
        if results.option_count:  # a random tiny model may leave every feature at zero
            feature = int(results.get_option_at_index(0).id.split(":")[1])
            results.highlighted = 0
            await pilot.press("enter")
            await settle(pilot)
            assert table.selected_id == feature
        else:
            await pilot.press("escape")
        await pilot.press("t", *"once upon a time", "enter")
        await wait_for(pilot, lambda: "max " in text_of(app, "#feature-test-result"), timeout=120)
        await pilot.press("escape")
        steered = table.selected_id
        await pilot.press("x")  # steer this feature: the Steering mode opens with it added
        await wait_for(pilot, lambda: app.current_mode == "steering" and app.screen.query("#steer-features"))
        await wait_for(pilot, lambda: str(steered) in app.screen.query_one("#steer-features").value, timeout=10)


async def test_test_text_says_when_the_feature_does_not_fire_and_v_shows_token_values(
    studio, monkeypatch: pytest.MonkeyPatch
):
    populate(studio.paths.home)

    def infer(self: Any, method: str, **kwargs: Any) -> dict[str, Any]:
        return {"tokens": [" the", " cat"], "activations": {kwargs["features"][0]: [0.0, 0.0]}}

    app = app_with_inference(studio, monkeypatch, infer)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_features(pilot)
        await pilot.press("t", *"the cat", "enter")
        await wait_for(pilot, lambda: "does not fire" in text_of(app, "#feature-test-result"))
        assert "0 on all 2 tokens" in text_of(app, "#feature-test-result")
        await pilot.press("escape")
        screen = app.screen
        reader, _ = screen.reader(screen.feature_set)
        example = reader.feature(table.selected_id).top_examples[0]
        value = f"[{float(example.activations[example.marked]):.3g}]"
        assert value not in text_of(app, "#feature-examples")
        await pilot.press("v")
        await pilot.pause()
        assert value in text_of(app, "#feature-examples")
        await pilot.press("v")
        await pilot.pause()
        assert value not in text_of(app, "#feature-examples")
