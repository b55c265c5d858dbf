"""Feature-browser latency with 65,536 features in the database, keystroke to frame, through Textual's Pilot.

Measures the first open (import and build the Features screen; goal < 1 s), then keystroke to frame for reopen
(switch back to the screen), sort (`s`), filter and search (last keystroke to the debounced result frame), scroll
(`j`) and jump to the end (`G`); goal < 150 ms each. Also printed: Enter in the filter box (focus back to the table,
a restyle of the screen). Reference in the same run: an unbound key, the Pilot's own keystroke-to-frame floor.

Usage: python benchmarks/features_browser.py [--quick] [--features N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_line import bench_line  # noqa: E402

GOAL_MS = 150.0
FIRST_OPEN_GOAL_MS = 1000.0  # the first switch also imports and builds the screen


def build_home(home: Path, n_features: int) -> int:
    """A populated home plus a feature set of `n_features` rows inserted in bulk; returns its id."""
    from mistudio_tui.db import features as fq
    from mistudio_tui.db.models import FeatureSet
    from tests.ui.populate import populate

    populate(home)
    small = FeatureSet.get()
    big = FeatureSet.create(
        name=f"bench-{n_features}", training=small.training_id, d_sae=n_features, status="ready", path=small.path
    )
    rng = random.Random(0)
    words = [f" w{i}" for i in range(2000)]
    started = time.perf_counter()
    fq.bulk_insert_features(
        big,
        (
            {
                "index": i,
                "density": 0.0 if i % 11 == 0 else 10 ** rng.uniform(-6, -1),
                "max_activation": rng.uniform(0, 40),
                "mean_activation": rng.uniform(0, 5),
                "top_tokens": " ".join(rng.sample(words, 5)),
                "technical_label": f"tok:{rng.choice(words)!r}",
                "dead": i % 11 == 0,
            }
            for i in range(n_features)
        ),
    )
    print(f"inserted {n_features:,} features in {time.perf_counter() - started:.2f} s")
    return big.id


async def measure(pilot: Any, keys: list[str], done: Callable[[], bool] | None = None) -> float:
    """Milliseconds from pressing the last of `keys` until the frame after it (and `done()`, when given)."""
    if keys[:-1]:
        await pilot.press(*keys[:-1])
        await pilot.pause()
    started = time.perf_counter()
    await pilot.press(keys[-1])
    await pilot.pause()
    while done is not None and not done():
        await pilot.pause(0.002)
    return (time.perf_counter() - started) * 1000


async def run(home: Path, fset_id: int, repeats: int) -> dict[str, float]:
    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.studio import Studio
    from mistudio_tui.ui.widgets.feature_table import FeatureTable

    studio = Studio(home)
    app = MiStudioApp(studio, offer_sample=False)
    results: dict[str, list[float]] = {
        k: [] for k in ("floor", "open", "reopen", "sort", "filter", "enter", "search", "scroll", "end")
    }
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(repeats):
                results["floor"].append(await measure(pilot, ["z"]))
            results["open"].append(await measure(pilot, ["4"]))
            screen = app.screen
            table = screen.query_one(FeatureTable)
            if table.feature_set_id != fset_id or table.total == 0:
                raise SystemExit(f"the browser opened feature set {table.feature_set_id}, not {fset_id}")
            for _ in range(repeats):
                await measure(pilot, ["1"])
                results["reopen"].append(await measure(pilot, ["4"]))
            for _ in range(repeats):
                results["sort"].append(await measure(pilot, ["s"]))
            for _ in range(repeats):
                results["scroll"].append(await measure(pilot, ["j"]))
            for _ in range(repeats):
                results["end"].append(await measure(pilot, ["G"]))
                await measure(pilot, ["g"])
            filters = ["alive density>1e-3", "density<1e-4", "!dead density>1e-5", "dead"]
            for i in range(repeats):
                text = filters[i % len(filters)]
                await measure(pilot, ["f", "end", *["backspace"] * 30, *text[:-1]])
                results["filter"].append(await measure(pilot, [text[-1]], done=lambda t=text: screen.filter_text == t))
                results["enter"].append(await measure(pilot, ["enter"]))
            await measure(pilot, ["f", "end", *["backspace"] * 30, "enter"])
            for i in range(repeats):
                query = f"w{17 * i + 3}"
                await measure(pilot, ["slash", "end", *["backspace"] * 10, *query[:-1]])
                results["search"].append(
                    await measure(pilot, [query[-1]], done=lambda q=query: table.filter.search == q)
                )
                await measure(pilot, ["escape"])
            print(f"rows cached at the end: {table.cached_rows} (of {table.total:,} shown)")
    finally:
        studio.close()
    return {name: statistics.median(values) for name, values in results.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (finishes in under a minute)")
    parser.add_argument("--features", type=int, default=65_536)
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["MISTUDIO_HOME"] = str(home)
        os.environ["MISTUDIO_CONFIG_DIR"] = str(Path(tmp) / "config")
        from mistudio_tui.studio import Studio

        studio = Studio(home)
        try:
            fset_id = build_home(home, args.features)
        finally:
            studio.close()
        medians = asyncio.run(run(home, fset_id, repeats))
    for name, value in medians.items():
        print(f"{name:>7}: {value:8.1f} ms (median of {1 if name == 'open' else repeats})")
    print(bench_line("browser_key_floor", medians["floor"], "ms", "<", GOAL_MS))
    print(bench_line(f"browser_first_open_{args.features}", medians["open"], "ms", "<", FIRST_OPEN_GOAL_MS))
    for name in ("reopen", "sort", "filter", "search", "scroll", "end"):
        print(bench_line(f"browser_{name}_{args.features}", medians[name], "ms", "<", GOAL_MS))


if __name__ == "__main__":
    main()
