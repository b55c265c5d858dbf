"""Keys at every width: help and quit stay in the footer, escape leaves a field, keys are commands, ctrl+q asks."""

from __future__ import annotations

from textual.widgets import Footer, Input, Static, TabbedContent

from mistudio_tui.app import MiStudioApp
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.screens.steering import SteeringScreen
from mistudio_tui.ui.widgets.jobs_bar import JobsBar
from tests.ui.populate import populate
from tests.ui.steering_fake import FakeSession


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


async def test_the_idle_jobs_strip_points_at_the_keys_panel_where_the_footer_is_cut(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(40, 30)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one(JobsBar)
        text = str(bar.render())
        assert "?: keys" in text and len(text) <= bar.content_size.width


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
