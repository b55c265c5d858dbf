"""The run detail screen shows stored ground-truth scores (MCC, features recovered) when an evaluation has them."""

from __future__ import annotations

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import Training
from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen
from tests.ui.populate import populate_runs

SCORES = {"mcc": 0.9512, "recovered": 0.875, "mean_max_cosine": 0.96, "features": 64, "latents": 128, "file": "x"}


async def test_detail_shows_ground_truth_scores_only_when_stored(studio):
    ids = populate_runs(studio.paths.home)
    scored, plain = ids["topk-k8"], ids["relu-l1"]
    Training.update(evaluation={"l0": 7.5, "ground_truth": SCORES}).where(Training.id == scored).execute()
    Training.update(evaluation={"l0": 7.5}).where(Training.id == plain).execute()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(TrainingDetailScreen(scored))
        await pilot.pause()
        config = str(app.screen.query_one("#run-config").render())
        assert "eval l0 7.5" in config and "'mcc'" not in config  # the scores get their own line, not a dict dump
        assert "ground truth MCC 0.951 · recovered 87.5% of 64 true features" in config
        await pilot.press("escape")
        await app.push_screen(TrainingDetailScreen(plain))
        await pilot.pause()
        assert "ground truth" not in str(app.screen.query_one("#run-config").render())
