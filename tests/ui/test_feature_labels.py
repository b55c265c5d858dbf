"""Feature labels: the detail says where a label came from, and 'labelled' means a semantic label everywhere."""

from __future__ import annotations

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import features as fq
from mistudio_tui.db.models import FeatureSet
from mistudio_tui.services.labeling import select_features
from tests.ui.pilot import wait_for
from tests.ui.populate import WORDS, populate


def detail_text(app: MiStudioApp) -> str:
    return str(app.screen.query_one("#feature-detail").render())


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
