"""Pilot tests of the Datasets and Models screens: templates in the extract form, favourites, statistics, rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

from textual.widgets import Input, Select

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import ActivationSet, Dataset, ExtractionTemplate, Job, Tokenization
from mistudio_tui.services import extraction_templates as templates
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.screens.datasets import SampleRowsModal
from mistudio_tui.ui.screens.models import ExtractForm
from tests.ui.populate import populate


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.1)


async def test_extract_form_fills_from_a_template_and_saves_a_new_one(studio):
    populate(studio.paths.home)
    templates.save_template("early", {"hooks": ["blocks.0.hook_resid_pre"]})
    late = templates.save_template(
        "late",
        {"hooks": ["blocks.1.hook_mlp_out", "blocks.1.hook_attn_out"], "n_tokens": 1234, "store_dtype": "float16"},
        favourite=True,
    )
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ExtractForm)
        select = form.query_one("#field-template", Select)
        labels = [str(option[0]) for option in select._options if option[1] is not Select.NULL]
        assert labels == ["late ★", "early"]
        select.value = late.id
        await pilot.pause()
        assert form.query_one("#field-hooks", Input).value == "blocks.1.hook_mlp_out, blocks.1.hook_attn_out"
        assert form.query_one("#field-n_tokens", Input).value == "1234"
        assert form.query_one("#field-store_dtype", Select).value == "float16"
        form.query_one("#field-batch_size", Input).value = "3"
        form.query_one("#field-save_as", Input).value = "late-small-batch"
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = ExtractionTemplate.get(ExtractionTemplate.name == "late-small-batch")
        assert saved.config["batch_size"] == 3 and saved.config["n_tokens"] == 1234
        aset = ActivationSet.select().order_by(ActivationSet.id.desc()).get()
        assert aset.hooks == ["blocks.1.hook_mlp_out", "blocks.1.hook_attn_out"] and aset.dtype == "float16"
        job = Job.get(Job.resource_type == "activation_set", Job.resource_id == aset.id)
        assert job.params["n_tokens"] == 1234 and job.params["batch_size"] == 3
        studio.runner.cancel(job.id)


async def test_wrong_hook_in_the_extract_form_is_one_clear_notice(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#field-hooks", Input).value = "blocks.7.hook_resid_post"
        await pilot.press("ctrl+s")
        await pilot.pause()
        notices = [n.message for n in app._notifications if "no hook point" in n.message]
        assert notices and "blocks.{0..1}" in notices[0] and "\n" not in notices[0]
        assert ActivationSet.select().count() == 1


async def test_favourite_key_toggles_a_template(studio):
    populate(studio.paths.home)
    templates.save_template("only", {"n_tokens": 10})
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert ExtractionTemplate.get(ExtractionTemplate.name == "only").favourite is True
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert ExtractionTemplate.get(ExtractionTemplate.name == "only").favourite is False


def _dataset_with_documents(home: Path, n: int) -> Dataset:
    folder = home / "datasets" / "docs"
    folder.mkdir(parents=True)
    (folder / "documents.jsonl").write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(n)))
    return Dataset.create(name="aaa-docs", source="/x.jsonl", path=str(folder), status="ready", n_documents=n)


async def test_tokenization_statistics_and_the_rows_viewer(studio):
    ids = populate(studio.paths.home)
    tok = Tokenization.get(Tokenization.dataset == ids["dataset"])
    tok.stats = {
        "padding_fraction": 0.25,
        "distinct_tokens": 212,
        "top_tokens": [
            {"id": 0, "count": 900, "special": True, "text": "<|endoftext|>"},
            {"id": 7, "count": 500, "special": False, "text": " the"},
            {"id": 9, "count": 300, "special": False, "text": " cat"},
        ],
        "document_lengths": {"min": 3, "median": 40.0, "max": 120},
    }
    tok.save()
    dataset = _dataset_with_documents(studio.paths.home, 20)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1")
        await pilot.pause()
        detail = str(app.screen.query_one("#tokenization-detail").render())
        assert "' the' 500" in detail and "<|endoftext|>" not in detail and "padding 25.0%" in detail
        assert "used by 1 activation set(s): tiny-L0-resid_post" in detail
        app.screen.query_one("#tokenizations-table").focus()
        await pilot.press("r")
        await pilot.pause()
        assert any("tokenization 'tiny-stories-ctx64' is already complete" in n.message for n in app._notifications)
        table = app.screen.query_one("#datasets-table")
        table.move_cursor(row=next(r for r in range(table.row_count) if table.get_row_at(r)[0] == dataset.name))
        await pilot.pause()
        assert "No tokenizations yet" in str(app.screen.query_one("#tokenization-detail").render())
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, SampleRowsModal)
        title = str(app.screen.query_one("#samples-title").render())
        assert "documents 1–8 of 20" in title
        assert "document 7" in str(app.screen.query_one("#samples-rows").render())
        await pilot.press("n", "n", "n")
        await pilot.pause()
        assert "documents 17–20 of 20" in str(app.screen.query_one("#samples-title").render())
        await pilot.press("p")
        await pilot.pause()
        assert "documents 9–16" in str(app.screen.query_one("#samples-title").render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SampleRowsModal)


async def test_wrong_text_field_reaches_the_screen_listing_the_fields(studio, tmp_path):
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("\n".join(json.dumps({"title": f"t{i}", "body": f"note {i}"}) for i in range(50)))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#field-source").value = str(corpus)
        app.screen.query_one("#field-text_field").value = "text"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: Dataset.select().where(Dataset.status == "failed").exists())
        await pilot.pause(0.3)
        error = Dataset.get().error
        assert "no field 'text'" in error and "title, body" in error and "\n" not in error
        detail = str(app.screen.query_one("#dataset-detail").render())
        assert "available fields: title, body" in detail


async def test_models_screen_shows_hook_points_and_resume_explains_itself(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        tree = app.screen.query_one("#module-tree")
        branch = next(n for n in tree.root.children if str(n.label).startswith("hook points"))
        assert str(branch.label) == "hook points (8)"
        assert any(str(leaf.label).startswith("blocks.1.hook_mlp_out") for leaf in branch.children)
        await pilot.press("r")
        await pilot.pause()
        assert any("already complete" in n.message for n in app._notifications)
        assert Job.select().count() == 0


async def test_hub_dataset_form_passes_config_split_streaming_and_limit(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        form.query_one("#field-source").value = "owner/corpus"
        form.query_one("#field-hub_config").value = "en"
        form.query_one("#field-hub_split").value = "validation"
        form.query_one("#field-limit").value = "10k"
        form.query_one("#field-text_field").value = "content"
        form.query_one("#field-streaming").value = False
        form.query_one("#field-dedupe").value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        dataset = Dataset.get()
        assert (dataset.source_type, dataset.hub_config, dataset.hub_split) == ("hub", "en", "validation")
        params = Job.get().params
        assert params["limit"] == 10_000 and params["streaming"] is False and params["text_field"] == "content"
        assert params["cleaning"]["dedupe"] is True
        studio.runner.cancel(Job.get().id)
