"""The UI's speed-ups live in one module whose table names each of them, and the app uses every one."""

from __future__ import annotations

import json
import re

from mistudio_tui.app import MiStudioApp
from mistudio_tui.ui import speedups
from mistudio_tui.ui.screens.base import StudioScreen


def test_the_table_names_each_speed_up_of_the_module_and_points_to_the_results():
    doc = speedups.__doc__ or ""
    names = re.findall(r"^\| `(\w+)`", doc, re.MULTILINE)
    assert names == ["lazy_screen", "start_startup_probe", "IdleCollector", "KeepStylesOnResume"]
    assert all(callable(getattr(speedups, name)) for name in names)
    assert "benchmarks/RESULTS.md" in doc


def test_mode_screens_keep_their_styles_on_resume_and_only_the_first_is_built_at_start(studio):
    assert issubclass(StudioScreen, speedups.KeepStylesOnResume)
    lazy = [mode for mode, screen in MiStudioApp.MODES.items() if not isinstance(screen, type)]
    assert lazy and MiStudioApp.DEFAULT_MODE not in lazy
    assert isinstance(MiStudioApp(studio, offer_sample=False).idle_gc, speedups.IdleCollector)


async def test_the_startup_probe_records_the_first_frame_and_leaves(studio, tmp_path, monkeypatch):
    probe = tmp_path / "probe.json"
    monkeypatch.setenv("MISTUDIO_STARTUP_PROBE", str(probe))
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            if not app.is_running:
                break
            await pilot.pause(0.05)
    record = json.loads(probe.read_text())
    assert record["first_frame_at"] > 0 and isinstance(record["heavy_modules"], list)  # torch: test_import_hygiene
