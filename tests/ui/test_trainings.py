"""Pilot tests of the Trainings workspace: list sort/filter/groups/marks, run detail, compare, failed-run guidance."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Checkbox, DataTable, Input, Select
from textual.widgets.data_table import ColumnKey

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import ActivationSet, Job, Training, TrainingMetric
from mistudio_tui.jobs.checkpoint_files import CHECKPOINT_DIR, checkpoint_path
from mistudio_tui.jobs.runner import JobEvent
from mistudio_tui.ui import actions
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.screens import trainings as trainings_screen
from mistudio_tui.ui.screens.training_compare import TrainingCompareScreen
from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen
from tests.ui.populate import populate_runs


def row_names(app) -> list[str]:
    table = app.screen.query_one("#trainings-table", DataTable)
    return [Training.get_by_id(int(row.key.value)).name for row in table.ordered_rows]


async def open_trainings(pilot) -> None:
    await pilot.press("3")
    await pilot.pause()


async def select(pilot, app, name: str) -> None:
    table = app.screen.query_one("#trainings-table", DataTable)
    table.move_cursor(row=row_names(app).index(name))
    await pilot.pause()


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_list_shows_every_run_with_groups_together_and_sorts_by_keys_and_headers(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        assert row_names(app) == ["topk-run", "topk-k8", "topk-k16", "relu-l1", "batchtopk-b"]
        table = app.screen.query_one("#trainings-table", DataTable)
        assert str(table.get_cell_at((1, 1))) == "L0-multi/topk-k8"
        assert all(str(table.get_cell_at((i, 3))).strip() for i in range(1, 5))  # a sparkline on each run with points
        await pilot.press("s")  # sort by name
        await pilot.pause()
        assert app.screen.sort_key == "name"
        assert row_names(app) == ["batchtopk-b", "relu-l1", "topk-k16", "topk-k8", "topk-run"]
        await pilot.press("S")
        await pilot.pause()
        assert row_names(app) == ["topk-run", "topk-k8", "topk-k16", "relu-l1", "batchtopk-b"]
        table.post_message(DataTable.HeaderSelected(table, ColumnKey("loss"), 4, "Loss"))
        await pilot.pause()
        losses = {t.name: t.loss for t in Training.select()}
        names = row_names(app)
        assert names[-1] == "topk-run"  # no loss recorded: last
        assert names.index("topk-k16") == names.index("topk-k8") - 1  # the group stays together
        assert losses["relu-l1"] == max(v for v in losses.values() if v is not None)
        assert names[-2] == "relu-l1"


async def test_filter_by_state_group_tag_and_a_bad_key(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await pilot.press("slash")
        await pilot.press(*"state:running")
        await pilot.pause()
        assert row_names(app) == ["topk-k8", "topk-k16"]
        app.screen.query_one("#run-filter").value = "tag:baseline"
        await pilot.pause()
        assert sorted(row_names(app)) == ["batchtopk-b", "topk-k8"]
        app.screen.query_one("#run-filter").value = "group:L0-multi arch:topk"
        await pilot.pause()
        assert row_names(app) == ["topk-k8", "topk-k16"]
        app.screen.query_one("#run-filter").value = "colour:red"
        await pilot.pause()
        assert "unknown filter 'colour'" in text_of(app, "#runs-title")
        assert row_names(app) == ["topk-k8", "topk-k16"]  # the last valid filter still applies
        app.screen.query_one("#run-filter").value = ""
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#trainings-table")
        assert len(row_names(app)) == 5


async def test_narrow_list_has_fewer_columns(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(40, 30)) as pilot:
        await open_trainings(pilot)
        table = app.screen.query_one("#trainings-table", DataTable)
        assert [str(c.value) for c in table.columns] == ["mark", "name", "state", "curve"]
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        keys = [str(c.value) for c in table.columns]
        assert keys[:7] == ["mark", "name", "state", "curve", "loss", "l0", "ev"]
        # whole columns only: a number is never cut (EV showed as '0.' when the columns ran past the pane)
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= table.scrollable_content_region.width


async def test_live_metrics_update_the_running_row(studio):
    ids = populate_runs(studio.paths.home)
    job = Job.create(kind="train", status="running", resource_type="training", resource_id=ids["topk-k8"])
    Training.update(job=job).where(Training.id == ids["topk-k8"]).execute()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "topk-k8")
        rows = [{"step": s, "tokens": s * 4096, "loss": 5.0} for s in range(300, 400)]
        mq.record_metrics(ids["topk-k8"], rows)
        app.screen.live.last_key = app.screen.live.last_draw = 0.0
        app._on_runner_event(JobEvent(job.id, "metrics", "running", rows))
        await pilot.pause()
        table = app.screen.query_one("#trainings-table", DataTable)
        assert str(table.get_cell(str(ids["topk-k8"]), "loss")) == "5"
        assert "steps 399" in text_of(app, "#training-detail")  # the steps column no longer fits at 120x40
        assert app.screen.query_one("#curve").series[0][1][-1] == 399


async def test_runs_trained_by_another_process_are_followed_through_the_database(studio):
    ids = populate_runs(studio.paths.home)
    Training.update(status="running").where(Training.id == ids["topk-k8"]).execute()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await open_trainings(pilot)
        await select(pilot, app, "topk-k8")
        screen = app.screen
        screen.live.last_key = 0.0
        screen.follow_database()  # the first poll notes what runs
        # another process (a CLI `mistudio train`) records metrics: no runner event reaches this app
        mq.record_metrics(ids["topk-k8"], [{"step": s, "tokens": s * 4096, "loss": 4.0} for s in range(300, 450)])
        screen.follow_database()
        await pilot.pause()
        table = screen.query_one("#trainings-table", DataTable)
        assert str(table.get_cell(str(ids["topk-k8"]), "steps")) == "449"
        assert screen.query_one("#curve").series[0][1][-1] == 449
        Training.update(status="completed").where(Training.id == ids["topk-k8"]).execute()
        Training.update(status="running").where(Training.id == ids["relu-l1"]).execute()
        screen.follow_database()  # a run stopped and another started elsewhere: the list reloads
        await pilot.pause()
        assert "running" in str(table.get_cell(str(ids["relu-l1"]), "state"))


async def test_detail_shows_curves_density_checkpoints_and_switches_metric(studio):
    ids = populate_runs(studio.paths.home)
    run_dir = studio.paths.home / "saes" / "batchtopk-b" / CHECKPOINT_DIR
    run_dir.mkdir(parents=True)
    for step in (100, 200):
        checkpoint_path(run_dir, step).write_bytes(b"x")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "batchtopk-b")
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainingDetailScreen) and screen.training_id == ids["batchtopk-b"]
        curve = screen.query_one("#detail-curve")
        assert len(curve.series[0][1]) == 300 and curve.log_y
        speed = screen.query_one("#speed-curve")
        assert speed.series[0][2] and abs(speed.series[0][2][0] - 40_000 / 4096) < 1e-6
        config = text_of(app, "#run-config")
        assert "step 100, step 200" in config and "sae.k 12" in config
        assert "paused" in text_of(app, "#run-summary")
        await pilot.press("m")
        await pilot.pause()
        assert screen.metric == "mse" and not screen.query_one("#detail-curve").series[0][1]
        await pilot.press("m", "m")
        await pilot.press("l")
        await pilot.pause()
        assert screen.metric == "explained_variance" and screen.query_one("#detail-curve").log_y
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert app.screen.query_one("#field-k").value == "12"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainingsScreen"


async def test_density_histogram_artifact_is_stored_and_drawn(studio):
    from mistudio_tui.jobs import protocol as p
    from mistudio_tui.jobs.kinds import train as train_kind

    ids = populate_runs(studio.paths.home)
    job = Job.create(kind="train", status="running", resource_type="training", resource_id=ids["topk-k16"])
    train_kind.train_artifact(
        job, p.Artifact("density_histogram", meta={"step": 777, "edges": [-3, -2, -1], "counts": [5, 7]})
    )
    assert Training.get_by_id(ids["topk-k16"]).density_histogram["step"] == 777
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "topk-k16")
        await pilot.press("enter")
        await pilot.pause()
        assert "777" in app.screen.query_one("#density-plot").title


async def test_failed_run_shows_error_log_and_likely_fix(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "relu-l1")
        pane = text_of(app, "#training-detail")
        assert "error: CUDA out of memory" in pane and "smaller batch" in pane
        assert "OutOfMemoryError" in text_of(app, "#training-log")
        await pilot.press("enter")
        await pilot.pause()
        guidance = text_of(app, "#run-guidance")
        assert "the device ran out of memory" in guidance and "smaller batch size" in guidance
        assert "step 130 loss 0.51" in text_of(app, "#run-log")


async def test_compare_overlays_marked_runs_and_highlights_config_differences(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert any("Mark two or more" in n.message for n in app._notifications)
        await select(pilot, app, "topk-k8")
        await pilot.press("space")  # marks and moves down to topk-k16
        await pilot.press("space")
        await pilot.pause()
        assert app.screen.marked == {Training.get(name="topk-k8").id, Training.get(name="topk-k16").id}
        assert str(app.screen.query_one("#trainings-table", DataTable).get_cell_at((1, 0))) == "●"
        await pilot.press("v")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainingCompareScreen)
        curve = screen.query_one("#compare-curve")
        assert [s[0] for s in curve.series] == ["topk-k8", "topk-k16"]
        table = screen.query_one("#compare-table", DataTable)
        labels = [str(table.get_cell_at((r, 0))) for r in range(table.row_count)]
        assert "≠ sae.k" in labels and "≠ train.lr" in labels
        assert "  sae.architecture" in labels  # same in both: not marked
        k_row = labels.index("≠ sae.k")
        assert [str(table.get_cell_at((k_row, c))) for c in (1, 2)] == ["8", "16"]
        await pilot.press("m")
        await pilot.pause()
        assert screen.metric == "mse"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainingsScreen"


async def test_delete_from_detail_warns_of_the_cascade_and_returns_to_the_list(studio):
    ids = populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "relu-l1")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "150 metric points" in app.screen.message
        await pilot.press("y")
        await pilot.pause()
        assert Training.get_or_none(Training.id == ids["relu-l1"]) is None
        assert not TrainingMetric.select().where(TrainingMetric.training == ids["relu-l1"]).exists()
        assert type(app.screen).__name__ == "TrainingsScreen"
        assert "relu-l1" not in row_names(app)


async def test_cancel_marks_a_paused_run_cancelled_and_export_says_why_it_cannot(studio, tmp_path):
    ids = populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await select(pilot, app, "batchtopk-b")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await pilot.pause()
        assert Training.get_by_id(ids["batchtopk-b"]).status == "cancelled"
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)  # a paused run is refused with a clear message
        app.screen.query_one("#field-path").value = str(tmp_path / "out")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("only a finished SAE" in str(n.message) for n in app._notifications)
        assert not Path(tmp_path / "out").exists()


async def test_new_run_templates_and_sweeps_keys_open_their_screens(studio, monkeypatch):
    populate_runs(studio.paths.home)
    ActivationSet.create(name="mlp", hooks=["in", "out"], d_in=32, status="ready", path="/x")  # the form's default
    submitted: list = []
    monkeypatch.setattr(actions, "submit_spec", lambda _screen, spec: submitted.append(spec))
    monkeypatch.setattr(trainings_screen, "submit_spec", lambda _screen, spec: submitted.append(spec))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_trainings(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        choice = app.screen.query_one("#field-architecture", Select)
        assert ("Matryoshka BatchTopK", "matryoshka") in [(str(label), value) for label, value in choice._options]
        app.screen.query_one("#field-transcode", Input).value = "in:out"  # a transcoder, with a skip connection
        app.screen.query_one("#field-skip", Checkbox).value = True
        app.screen.action_submit()
        await pilot.pause()
        assert [spec.params.source.hook_out for spec in submitted] == ["out"]
        assert submitted[0].resource.config["sae"]["skip_connection"] is True
        await pilot.press("t")
        await pilot.pause()
        assert type(app.screen).__name__ == "TemplatePicker"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("w")
        await pilot.pause()
        assert type(app.screen).__name__ == "SweepsScreen"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert type(app.screen).__name__ == "SaveTemplateModal"
