"""Pilot tests: the template picker and save dialog, and the sweeps screen with its Pareto scatter and form."""

from __future__ import annotations

import json
from pathlib import Path

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import ActivationSet, Job, Sweep, Training, TrainingTemplate
from mistudio_tui.services import sweeps as sweep_svc
from mistudio_tui.services import templates as svc
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.modals.templates import SaveTemplateModal, TemplatePicker
from mistudio_tui.ui.screens.sweeps import ParetoPlot, SweepsScreen
from tests.ui.populate import populate


def add_templates() -> None:
    svc.save_template("zeta", svc.config_from_values(architecture="topk", k=8, expansion=4))
    svc.save_template("alpha", svc.config_from_values(architecture="relu", l1_coefficient=2.0))
    svc.save_template("mid", svc.config_from_values(architecture="jumprelu", lr=1e-4), favourite=True)


def names(picker: TemplatePicker) -> list[str]:
    return [str(picker.table.get_row_at(i)[1]) for i in range(picker.table.row_count)]


async def test_picker_lists_favourites_first_toggles_and_returns_the_config(studio):
    add_templates()
    results: list[object] = []
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        picker = TemplatePicker()
        app.push_screen(picker, results.append)
        await pilot.pause()
        assert names(picker) == ["mid", "alpha", "zeta"]
        assert str(picker.table.get_row_at(0)[0]) == "★"
        await pilot.press("down", "down", "f")  # zeta becomes a favourite
        await pilot.pause()
        assert names(picker) == ["mid", "zeta", "alpha"]
        assert picker.selected.name == "zeta" and TrainingTemplate.get(name="zeta").favourite
        await pilot.press("enter")
        await pilot.pause()
    assert results == [{"sae": {"architecture": "topk", "k": 8, "expansion": 4}, "train": {}}]


async def test_picker_exports_and_imports_by_path(studio, tmp_path: Path):
    add_templates()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        picker = TemplatePicker()
        app.push_screen(picker)
        await pilot.pause()
        await pilot.press("e")
        box = picker.query_one("#template-path")
        assert box.has_focus
        box.value = str(tmp_path)
        await pilot.press("enter")
        await pilot.pause()
        exported = tmp_path / "mid.json"
        assert json.loads(exported.read_text())["config"] == TrainingTemplate.get(name="mid").config

        doc = json.loads(exported.read_text())
        doc["name"], doc["config"]["sae"]["k"] = "from-file", "many"
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        await pilot.press("i")
        box.value = str(bad)
        await pilot.press("enter")
        await pilot.pause()
        message = str(picker.query_one("#template-message").render())
        assert "sae.k must be an integer" in message and box.has_class("-open")

        doc["config"]["sae"]["k"] = 16
        bad.write_text(json.dumps(doc))
        await pilot.press("enter")
        await pilot.pause()
        assert TrainingTemplate.get(name="from-file").config["sae"]["k"] == 16
        assert picker.selected.name == "from-file" and not box.has_class("-open")
        await pilot.press("x")
        await pilot.pause()
        assert TrainingTemplate.get_or_none(name="from-file") is None


async def test_save_a_run_as_a_template_from_the_picker(studio):
    populate(studio.paths.home)
    run = Training.get(name="topk-run")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        picker = TemplatePicker(training=run)
        app.push_screen(picker)
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SaveTemplateModal)
        name = app.screen.query_one("#template-name")
        assert name.value == "topk-run-template"
        name.value = "  "
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "needs a name" in str(app.screen.query_one("#save-template-error").render())
        name.value = "k4"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is picker
        assert names(picker) == ["k4"]
    saved = TrainingTemplate.get(name="k4")
    assert saved.config["sae"] == {"architecture": "topk", "k": 4, "expansion": 0.375}


def add_sweep(aset: ActivationSet) -> Sweep:
    sweep = sweep_svc.new_sweep(sweep_svc.SweepRequest(activations=aset.id, space="k=2,4,8", name="ks")).resource
    sweep.status = "completed"
    sweep.save()
    for i, (k, l0, ev, status) in enumerate(
        [(2, 2.0, 0.6, "completed"), (4, 4.0, 0.8, "completed"), (8, 8.0, 0.7, "completed")]
    ):
        Training.create(
            name=f"ks-t{i:02d}",
            activation_set=aset,
            sweep=sweep,
            status=status,
            l0=l0,
            explained_variance=ev,
            d_in=32,
            d_sae=64,
            config={"sae": {"k": k}, "train": {}},
            group_name="ks",
        )
    return sweep


async def test_sweeps_screen_lists_trials_and_marks_the_front(studio):
    populate(studio.paths.home)
    add_sweep(ActivationSet.get(name="tiny-L0-resid_post"))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(SweepsScreen())
        await pilot.pause()
        screen = app.screen
        trials = screen.query_one("#trials-table")
        assert trials.row_count == 3
        marks = [str(trials.get_row_at(i)[0]) for i in range(3)]
        assert marks == ["◆", "◆", " "]
        plot = screen.query_one(ParetoPlot)
        assert sorted(plot.points) == [(2.0, 0.6), (4.0, 0.8), (8.0, 0.7)]
        assert plot.front == [(2.0, 0.6), (4.0, 0.8)]
        await pilot.press("a")
        await pilot.pause()
        assert plot.y_label == "CE recovered" and plot.points == []
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SweepsScreen)


async def test_new_sweep_form_validates_the_space_and_starts_a_sweep_job(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(SweepsScreen())
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-space").value = "width=1,2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "unknown field 'width'" in str(form.query_one("#error-space").render())  # beside the field
        form.query_one("#field-space").value = "k=2,4"
        form.query_one("#field-name").value = "from-ui"
        await pilot.press("ctrl+s")
        await pilot.pause()
        sweep = Sweep.get(name="from-ui")
        assert sweep.space["text"] == "k=2,4" and sweep.base_config["trials"] == 2
        job = sweep_svc.sweep_job(sweep)
        assert job is not None and job.kind == "sweep"
        studio.runner.cancel(job.id)
        await pilot.pause()
    assert Job.select().where(Job.kind == "sweep").count() == 1
