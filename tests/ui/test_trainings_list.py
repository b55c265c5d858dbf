"""The runs list of the Trainings screen: a new run is selected when it appears."""

from __future__ import annotations

import os
from typing import Any

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.jobs import create_job
from mistudio_tui.db.models import Training
from mistudio_tui.jobs.registry import get_kind
from mistudio_tui.ui.modals.form import FormModal
from tests.ui.pilot import wait_for
from tests.ui.populate import populate_runs


async def test_a_new_run_is_selected_when_it_appears(studio, monkeypatch) -> None:
    populate_runs(studio.paths.home)

    def queue_only(kind: str, params: Any, title: str = "", resource: Any = None):  # no worker process
        row = get_kind(kind).row_params(params)
        return create_job(kind, title, row, resource, os.getpid(), studio.paths.dir("logs"))

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
