"""Tables and names: markup in names shows literally, status columns fit 40 columns, wide tables show names in full."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import Dataset, Job
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.widgets.jobs_bar import JobsBar
from mistudio_tui.ui.widgets.record_table import RecordTable
from tests.ui.populate import populate

MARKUP_NAME = "notes[/]v2 [b]"


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
