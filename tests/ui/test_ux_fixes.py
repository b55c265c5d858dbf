"""Pilot tests of fixes found by using the app as a researcher would (footer, forms, markup in names, narrow tables)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Checkbox, Footer, Input, Static, TabbedContent

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import ActivationSet, Dataset, ExtractionTemplate, Job
from mistudio_tui.jobs.runner import JobEvent
from mistudio_tui.ui.messages import JobUpdate
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.screens.steering import SteeringScreen
from mistudio_tui.ui.widgets.jobs_bar import JobsBar
from mistudio_tui.ui.widgets.record_table import RecordTable
from tests.ui.populate import populate
from tests.ui.steering_fake import FakeSession

MARKUP_NAME = "notes[/]v2 [b]"


def footer_keys(app: MiStudioApp) -> dict[str, object]:
    """The footer's key widgets by action."""
    return {key.action: key for key in app.screen.query_one(Footer).query("FooterKey")}


async def test_footer_keeps_screen_actions_help_and_quit_visible_at_120_columns(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for mode in ("1", "2", "5", "6", "j"):
            await pilot.press(mode)
            await pilot.pause()
            keys = footer_keys(app)
            for action in ("toggle_keys", "request_quit"):
                assert keys[action].region.right <= 120, f"{action} is cut off on screen {mode}"
            # the seven mode keys share one entry instead of seven labelled ones
            assert "switch_mode('datasets')" in keys and not keys["switch_mode('datasets')"].description


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


async def test_names_and_errors_holding_markup_show_literally_and_never_crash(studio):
    ids = populate(studio.paths.home)
    Dataset.update(name=MARKUP_NAME, error="bad row [/] in [red]x").where(Dataset.id == ids["dataset"]).execute()
    Job.create(kind="tokenize", title=f"Tokenize {MARKUP_NAME}", status="running", progress_text="[/] rows")
    Job.create(kind="ingest", title=f"Ingest {MARKUP_NAME}", status="failed", error="line 2: [/] is not JSON")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#datasets-table", RecordTable)
        assert Text.from_markup(table.get_row_at(0)[0]).plain == MARKUP_NAME
        assert MARKUP_NAME in str(app.screen.query_one("#dataset-detail", Static).render())
        assert MARKUP_NAME in str(app.screen.query_one(JobsBar).render())
        app.notify(f"✗ Ingest {MARKUP_NAME} failed: [/]")
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert MARKUP_NAME in str(app.screen.query_one(".dialog-body", Static).render())
        await pilot.press("n")
        await pilot.press("j")
        await pilot.pause()
        for _ in range(2):
            await pilot.press("down")
            await pilot.pause()
        assert app.is_running
        jobs = app.screen.query_one("#jobs-table", RecordTable)
        assert f"Ingest {MARKUP_NAME}" in {Text.from_markup(jobs.get_row_at(r)[1]).plain for r in range(jobs.row_count)}


async def test_status_columns_stay_visible_at_40_columns(studio):
    populate(studio.paths.home)
    Job.create(kind="tokenize", title="Tokenize a dataset with a rather long name indeed", status="completed")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(40, 30)) as pilot:
        for mode, table_ids in (("1", ["#datasets-table"]), ("2", ["#models-table"]), ("j", ["#jobs-table"])):
            await pilot.press(mode)
            await pilot.pause()
            for table_id in table_ids:
                table = app.screen.query_one(table_id, RecordTable)
                upto_status = 0
                for key, column in table.columns.items():
                    upto_status += column.get_render_width(table)
                    if key.value == "status":
                        break
                assert upto_status <= table.scrollable_content_region.width, f"{table_id}: Status is cut off"


async def test_wide_tables_show_long_names_in_full(studio):
    populate(studio.paths.home)
    long_title = "Features of topk-blocks.0.hook_resid_post-1024"
    Job.create(kind="features.extract", title=long_title, status="completed")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("j")
        await pilot.pause()
        table = app.screen.query_one("#jobs-table", RecordTable)
        assert table.columns[next(k for k in table.columns if k.value == "job")].width >= len(long_title)
        assert long_title in {str(table.get_row_at(r)[1]) for r in range(table.row_count)}


async def test_monitor_says_why_there_is_no_gpu_once(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause(0.5)
        text = str(app.screen.query_one("#gpu-none", Static).render())
        if text:  # empty where NVML sees GPUs
            assert text.lower().count("no nvidia gpu") == 1, text


async def test_a_stopped_training_says_it_can_be_resumed_not_just_cancelled(studio):
    job = Job.create(kind="train", title="Train topk-run", status="cancelled")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(JobUpdate(JobEvent(job.id, "state", "cancelled")))
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("Train topk-run" in m and "resumes" in m for m in messages), messages


async def test_analysis_ops_run_from_the_palette_without_a_strength(studio):
    ids = populate(studio.paths.home)
    fake = FakeSession()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SteeringScreen)
        screen._session = fake
        screen.query_one("#steer-features", Input).value = "3"
        screen.query_one("#steer-prompt", Input).value = "Once"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert screen.query_one("#steer-tabs", TabbedContent).active == "tab-analysis"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert screen.query_one("#steer-tabs", TabbedContent).active == "tab-compare"
        commands = {c.title: c for c in app.get_system_commands(screen)}
        commands["Steering: ablate the features"].callback()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.calls[-1] == ("ablate", {"training_id": ids["training"], "text": "Once", "features": [3]})
        assert screen.query_one("#steer-tabs", TabbedContent).active == "tab-analysis"
        assert "strength" not in str(screen.query_one("#an-result", Static).content)


async def test_escape_leaves_a_steering_field_so_mode_keys_work_again(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        prompt = app.screen.query_one("#steer-prompt", Input)
        prompt.focus()
        await pilot.press("1")
        assert prompt.value == "1" and isinstance(app.screen, SteeringScreen)
        await pilot.press("escape", "1")
        await pilot.pause()
        assert app.current_mode == "datasets"


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


async def test_the_idle_jobs_strip_points_at_the_keys_panel_where_the_footer_is_cut(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(40, 30)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one(JobsBar)
        text = str(bar.render())
        assert "?: keys" in text and len(text) <= bar.content_size.width


async def test_every_screen_key_is_also_a_palette_command(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for hidden in ("Datasets: Resume", "Datasets: Sample", "Datasets: View rows"):
            assert hidden in commands, sorted(commands)
        commands["Datasets: View rows"].callback()
        await pilot.pause()
        assert type(app.screen).__name__ == "SampleRowsModal"


def test_a_bad_count_option_is_named_once(capsys):
    from mistudio_tui.cli.main import main

    assert main(["train", "--activations", "1", "--tokens", "abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.count("--tokens") == 1 and "'abc' is not a count" in err, err


async def test_a_failed_dataset_shows_its_error_and_no_empty_length_plot(studio):
    populate(studio.paths.home)
    Dataset.create(
        name="broken",
        source_type="local",
        source="/x/broken.jsonl",
        path="/x",
        status="failed",
        error="broken.jsonl line 2: invalid JSON",
    )
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        plot = app.screen.query_one("#length-hist")
        assert plot.display
        await pilot.press("down")
        await pilot.pause()
        assert "invalid JSON" in str(app.screen.query_one("#dataset-detail", Static).render())
        assert not plot.display


async def test_ctrl_q_asks_before_quitting_while_jobs_run(studio, monkeypatch):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        monkeypatch.setattr(studio.runner, "running_ids", lambda: [7])
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        quit_command = next(c for c in app.get_system_commands(app.screen) if c.title == "Quit")
        await quit_command.callback()
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, ConfirmModal)
