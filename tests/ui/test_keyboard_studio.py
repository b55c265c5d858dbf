"""Issue 19 (part A): nothing typed is lost, focus goes where the user looks, cursors stay on their row."""

from __future__ import annotations

import os
from typing import Any

from textual.widgets import Input, Static

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.jobs import create_job
from mistudio_tui.db.models import LabelingJob, Training
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.ui.modals.form import FormModal
from tests.ui.populate import populate
from tests.ui.test_app import wait_for


async def open_new_run_form(pilot, app) -> FormModal:
    await pilot.press("3")
    await pilot.pause()
    await pilot.press("n")
    await pilot.pause()
    assert isinstance(app.screen, FormModal)
    return app.screen


def beside(form: FormModal, name: str) -> str:
    box = form.query_one(f"#error-{name}", Static)
    return str(box.render()) if box.display else ""


async def test_new_run_form_refuses_bad_values_in_place_and_keeps_what_was_typed(studio):
    populate(studio.paths.home)
    runs = Training.select().count()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_new_run_form(pilot, app)
        for name, bad in (("k", "99999"), ("batch_size", "0"), ("lr", "-1"), ("aux_k_coefficient", "-0.5")):
            form.query_one("#field-name", Input).value = "my-run"
            form.query_one(f"#field-{name}", Input).value = bad
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.screen is form, f"{name}={bad} closed the form"
            assert form.focused is form.query_one(f"#field-{name}"), name
            assert beside(form, name), f"no message beside {name}"
            assert form.query_one(f"#field-{name}", Input).value == bad
            assert form.query_one("#field-name", Input).value == "my-run"
            assert Training.select().count() == runs  # no run row was created
            form.query_one(f"#field-{name}", Input).value = ""
        await pilot.press("escape")


async def test_new_run_form_shows_the_trainer_defaults_and_passes_name_tags_and_advanced_values(studio, monkeypatch):
    populate(studio.paths.home)
    submitted = []

    def queue_only(kind: str, params: Any, title: str = "", resource: Any = None):  # no worker process
        submitted.append(kind)
        row = get_kind(kind).row_params(params)
        return create_job(kind, title, row, resource, os.getpid(), studio.paths.dir("logs"))

    monkeypatch.setattr(studio.runner, "submit", queue_only)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_new_run_form(pilot, app)
        value = {name: form.query_one(f"#field-{name}", Input).value for name in ("seed", "lr_warmup_steps")}
        assert value == {"seed": "0", "lr_warmup_steps": ""}  # blank: the optimiser picks (0 for sign descent)
        assert form.query_one("#field-aux_k_coefficient", Input).value == "0.03125"
        assert form.query_one("#field-dead_tokens_threshold", Input).value == "10M"
        form.query_one("#field-name", Input).value = "seeded"
        form.query_one("#field-tags", Input).value = "sweep-a, keep"
        form.query_one("#field-seed", Input).value = "7"
        form.query_one("#field-dead_tokens_threshold", Input).value = "1M"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is not form
        run = Training.get(Training.name == "seeded")
        assert run.tags == "sweep-a, keep"
        assert run.config["train"]["seed"] == 7 and run.config["sae"]["dead_tokens_threshold"] == 1_000_000
        assert submitted == ["train"]


async def test_labeling_form_refuses_an_endpoint_that_is_not_a_url(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("L")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-endpoint", Input).value = "localhost-8000"
        form.query_one("#field-model", Input).value = "my-model"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert form.focused is form.query_one("#field-endpoint")
        assert "URL" in beside(form, "endpoint")
        assert form.query_one("#field-model", Input).value == "my-model"
        assert not LabelingJob.select().exists()


async def test_a_run_failed_by_its_configuration_offers_a_clone_not_a_resume(studio):
    from mistudio_tui.db.models import Job
    from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen

    ids = populate(studio.paths.home)
    run = Training.get_by_id(ids["training"])
    config = {**run.config, "train": {**run.config["train"], "lr": -1.0}}  # a row written before the form checked
    Training.update(status="failed", error="ValueError: lr must be positive, got -1.0", config=config).where(
        Training.id == run.id
    ).execute()
    jobs = Job.select().count()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(TrainingDetailScreen(run.id))
        await pilot.pause()
        guidance = str(app.screen.query_one("#run-guidance").render())
        assert "configuration error" in guidance and "clone it with changes" in guidance
        assert "r resumes" not in guidance
        await pilot.press("r")
        await pilot.pause()
        assert Job.select().count() == jobs  # no resume job that would fail the same way
        assert any("clone it with changes" in str(n.message) for n in app._notifications)


async def test_steer_this_feature_puts_the_cursor_in_the_prompt(studio):
    ids = populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for visit in range(2):  # the first open mounts the Steering screen; the second finds it mounted
            await pilot.press("4")
            await pilot.pause()
            app.screen.jump_to(3 + visit)
            await pilot.pause()
            await pilot.press("x")
            await wait_for(pilot, lambda: app.current_mode == "steering" and app.screen.query("#steer-features"))
            steering = app.screen
            wanted = str(3 + visit)
            await wait_for(pilot, lambda s=steering, w=wanted: w in s.query_one("#steer-features").value)
            await pilot.pause()
            assert app.focused is steering.query_one("#steer-prompt")
            await pilot.press(*"the cat")
            assert steering.query_one("#steer-prompt").value.endswith("the cat")
            assert steering.training_id == ids["training"]  # the typing did not reach the SAE dropdown
            await pilot.press("escape")
            await pilot.pause()


async def test_the_runs_cursor_stays_on_its_run_through_resizes_and_refreshes(studio):
    from tests.ui.populate import populate_runs

    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        await pilot.press("down", "down", "down")
        await pilot.pause()
        chosen = screen.table.selected_id
        assert chosen is not None and chosen != screen.shown_ids[0]
        for width in (60, 40, 120):  # narrow and wide column sets
            await pilot.resize_terminal(width, 40)
            await pilot.pause()
            assert screen.table.selected_id == chosen, width
        screen.reload()
        await pilot.pause()
        assert screen.table.selected_id == chosen


async def test_the_comparison_cursor_stays_on_its_row_when_the_metric_changes(studio):
    from tests.ui.populate import populate_runs

    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3", "down", "space", "space", "v")
        await pilot.pause()
        table = app.screen.query_one("#compare-table")
        table.move_cursor(row=4)
        await pilot.press("m")
        await pilot.pause()
        assert table.cursor_row == 4


async def test_run_names_that_share_a_start_stay_distinct_at_any_width(studio):
    from textual.widgets import DataTable

    from tests.ui.populate import populate_runs

    ids = populate_runs(studio.paths.home)
    base = "topk-blocks.0.hook_resid_post-1024"
    for n, name in enumerate(["topk-k8", "topk-k16", "relu-l1", "batchtopk-b"]):
        Training.update(name=f"{base}-{n + 2}", group_name=None).where(Training.id == ids[name]).execute()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        table = app.screen.query_one("#trainings-table", DataTable)
        for size in ((120, 40), (40, 30), (100, 30)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await pilot.pause()
            shown = [str(table.get_cell(row.key, "name")) for row in table.ordered_rows]
            assert len(set(shown)) == len(shown), (size, shown)
            width = table.columns["name"].width
            assert all(len(name) <= width for name in shown), (size, shown)


async def test_the_narrow_features_table_keeps_the_top_tokens(studio):
    from tests.ui.populate import WORDS

    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(40, 30)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        table = app.screen.query_one("#features-table")
        assert [column.key for column, _ in table.columns()] == ["index", "labels", "top"]
        assert "Top tokens" in table.render_line(0).text
        first = table.row(0)
        assert first.top_tokens and WORDS[first.index] in table.render_line(1).text


async def test_the_clone_form_refuses_a_bad_value_in_place(studio):
    from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen

    ids = populate(studio.paths.home)
    runs = Training.select().count()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(TrainingDetailScreen(ids["training"]))
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-name", Input).value = "clone-1"
        form.query_one("#field-lr", Input).value = "-1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form and form.focused is form.query_one("#field-lr")
        assert "lr must be positive" in beside(form, "lr")
        assert form.query_one("#field-name", Input).value == "clone-1"
        assert Training.select().count() == runs
