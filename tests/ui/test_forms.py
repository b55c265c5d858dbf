"""Forms keep what was typed on a bad input (add dataset, extract activations) and pass their options to the job."""

from __future__ import annotations

import time

from textual.widgets import Checkbox, Input, Static

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import ActivationSet, Dataset, ExtractionTemplate, Job
from mistudio_tui.ui.modals.form import FormModal
from tests.ui.populate import populate


async def test_a_missing_file_keeps_the_add_dataset_form_open_with_what_was_typed(studio, tmp_path):
    app = MiStudioApp(studio, offer_sample=False)
    missing = tmp_path / "nope.jsonl"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-source", Input).value = str(missing)
        form.query_one("#field-name", Input).value = "my-corpus"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form, "the form closed on a bad file and lost what was typed"
        assert str(missing) in str(form.query_one("#form-error", Static).content)
        assert form.query_one("#field-name", Input).value == "my-corpus"
        assert Dataset.select().count() == 0 and Job.select().count() == 0


async def test_a_wrong_hook_keeps_the_extract_form_open_and_saves_no_template(studio):
    populate(studio.paths.home)
    sets_before = ActivationSet.select().count()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-hooks", Input).value = "blocks.9.hook_nope"
        form.query_one("#field-save_as", Input).value = "broken-settings"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "blocks.9.hook_nope" in str(form.query_one("#form-error", Static).content)
        assert ExtractionTemplate.get_or_none(ExtractionTemplate.name == "broken-settings") is None
        assert ActivationSet.select().count() == sets_before
        # correcting the field starts the job from the same form
        form.query_one("#field-hooks", Input).value = "blocks.0.hook_resid_post"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, FormModal)
        assert ActivationSet.select().count() == sets_before + 1
        assert ExtractionTemplate.get_or_none(ExtractionTemplate.name == "broken-settings") is not None


async def test_the_add_dataset_form_can_skip_malformed_rows(studio, tmp_path):
    corpus = tmp_path / "rows.jsonl"
    corpus.write_text('{"text": "first document"}\n{not json\n{"text": "second document"}\n')
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        form.query_one("#field-source", Input).value = str(corpus)
        form.query_one("#field-skip_bad_rows", Checkbox).value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        job = Job.get()
        assert job.params["skip_bad_rows"] is True
        deadline = time.monotonic() + 60
        while Job.get_by_id(job.id).status not in ("completed", "failed"):
            assert time.monotonic() < deadline, "ingest did not finish"
            await pilot.pause(0.2)
        assert Job.get_by_id(job.id).status == "completed", Job.get_by_id(job.id).error
        assert Dataset.get().n_documents == 2
