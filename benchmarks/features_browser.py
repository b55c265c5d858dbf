"""Feature-browser latency with 65,536 features in the database, keystroke to frame.

Each figure is `frame_latency.key_to_frame`: from the key event posted to the first frame emitted after the key and
everything its handlers posted were handled (for filter and search, after the debounced query ran too). Measured:
the first open (import and build the Features screen; goal < 1 s), then reopen (switch back to the screen), sort
(`s`), filter and search (the last keystroke of a query), scroll (`j`), detail (one `j` after a pause, until the frame
whose detail pane shows the new feature; the pane is drawn a frame after the cursor), jump to the end (`G`), focus
entering the filter box (`f`) and Enter in it (focus back to the table); goal < 150 ms each. Reference in the same
run: an unbound key (the app's own key-to-frame floor).
Also printed: the old Pilot round trip per action (`press` + `pause`, which waits until the whole app is idle), and
the full garbage collections inside and between the measured keys. The labelled filter (one feature in 20 has a
semantic label) is timed alone, with a density range and with !dead, each under the next sort order.

The database and a feature store with real detail for every feature (examples, histogram, logit lens, similar
features) are written in a child process: building them imports torch, which the UI process never does.

Usage: python benchmarks/features_browser.py [--quick] [--features N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_line import bench_line  # noqa: E402
from frame_latency import frame_probe, key_to_frame  # noqa: E402

GOAL_MS = 150.0
FIRST_OPEN_GOAL_MS = 1000.0  # the first switch also imports and builds the screen
ACTIONS = ("floor", "reopen", "sort", "filter", "enter", "search", "scroll", "end")
FRAME_ONLY = ("open", "detail", "labelled", "focus")
FILTERS = ["alive density>1e-3", "density<1e-4", "!dead density>1e-5", "dead"]
LABELLED_FILTERS = ["labelled", "unlabelled density>1e-4", "labelled !dead", "unlabelled"]  # each under another sort
LABELLED_EVERY = 20  # one feature in this many has a semantic label
SEARCHES = ["w17", "w1234", "w3", "tok:' w5", "w20", "w999 w"]  # common and rare; 'w3' is below the trigram index


def build_home(home: str, n_features: int) -> int:
    """A populated home plus a feature set of `n_features` rows inserted in bulk; returns its id."""
    os.environ["MISTUDIO_HOME"] = home
    from peewee import Expression, fn

    from mistudio_tui.db import features as fq
    from mistudio_tui.db.models import Feature, FeatureSet
    from mistudio_tui.studio import Studio
    from tests.ui.populate import populate

    studio = Studio(Path(home))
    try:
        populate(Path(home))
        small = FeatureSet.get()
        store = Path(home) / "features" / f"bench-{n_features}"
        started = time.perf_counter()
        write_store(store, n_features)
        print(f"wrote a store of {n_features:,} features in {time.perf_counter() - started:.2f} s", flush=True)
        big = FeatureSet.create(
            name=f"bench-{n_features}", training=small.training_id, d_sae=n_features, status="ready", path=str(store)
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
        print(f"inserted {n_features:,} features in {time.perf_counter() - started:.2f} s", flush=True)
        labelled = Feature.update(semantic_label=fn.printf("concept %d", Feature.index)).where(
            (Feature.feature_set == big.id) & (Expression(Feature.index, "%", LABELLED_EVERY) == 3)
        )
        print(f"labelled {labelled.execute():,} of them", flush=True)
        return big.id
    finally:
        studio.close()


def write_store(folder: Path, n_features: int, vocab: int = 2000, chunks: int = 16) -> None:
    """A feature store where every feature has examples, a histogram, a logit lens and similar features.

    Codes are sparse and random like a TopK SAE's (64 features fire on each of 16 x 256 random tokens), so each
    detail pane the browser draws has about the content of a real one.
    """
    import json

    import torch

    from mistudio_tui.ml.features.accumulate import FeatureAccumulator
    from mistudio_tui.ml.features.logit_lens import LogitLens
    from mistudio_tui.ml.features.similarity import SimilarFeatures
    from mistudio_tui.ml.features.store import FeatureSetWriter

    gen = torch.Generator().manual_seed(0)
    batch, length, active = 4, 64, 64
    acc = FeatureAccumulator(n_features, top_k=8, n_quantiles=3, per_quantile=2, context=(8, 3), hist_bins=16)
    for chunk in range(chunks):
        codes = torch.zeros(batch, length, n_features)
        fired = torch.randint(0, n_features, (batch, length, active), generator=gen)
        codes.scatter_(2, fired, torch.rand(batch, length, active, generator=gen) * 10)
        tokens = torch.randint(0, vocab, (batch, length), generator=gen)
        acc.update(codes, tokens, torch.arange(batch) + batch * chunk, torch.ones(batch, length, dtype=torch.bool))
    neighbours = (torch.arange(n_features).unsqueeze(1) + torch.arange(1, 9)) % n_features
    similar = SimilarFeatures(neighbours, torch.linspace(0.9, 0.5, 8).expand(n_features, 8).contiguous())
    top = (n_features, 10)
    lens = LogitLens(
        torch.randint(0, vocab, top, generator=gen),
        torch.rand(top, generator=gen),
        torch.randint(0, vocab, top, generator=gen),
        -torch.rand(top, generator=gen),
    )
    FeatureSetWriter(folder).write(acc.finalize(), {"benchmark": True}, logit_lens=lens, similar=similar)
    (folder / "vocab.json").write_text(json.dumps([f" w{i}" for i in range(vocab)]))


class FullCollections:
    """Generation-2 garbage collections and their pauses, split into those inside a measured key and the rest."""

    def __init__(self) -> None:
        self.in_keys_ms: list[float] = []
        self.between_ms: list[float] = []
        self.measuring = False
        self._started = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    async def measure(self, figure: Awaitable[float]) -> float:
        """Await one measured figure, counting the collections that fall inside it."""
        self.measuring = True
        try:
            return await figure
        finally:
            self.measuring = False

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = (time.perf_counter() - self._started) * 1000
            (self.in_keys_ms if self.measuring else self.between_ms).append(pause)

    def summary(self) -> str:
        def part(pauses: list[float]) -> str:
            return f"{len(pauses)}" + (f" (longest {max(pauses):.0f} ms)" if pauses else "")

        return (
            f"full garbage collections: {part(self.in_keys_ms)} inside measured keys, {part(self.between_ms)} between"
        )


async def pilot_ms(pilot: Any, key: str, done: Callable[[], bool] | None = None) -> float:
    """The old figure: `press` + `pause` (the whole app idle), then until `done()` holds."""
    started = time.perf_counter()
    await pilot.press(key)
    await pilot.pause()
    while done is not None and not done():
        await pilot.pause(0.002)
    return (time.perf_counter() - started) * 1000


async def type_keys(pilot: Any, *keys: str) -> None:
    await pilot.press(*keys)
    await pilot.pause()


async def run(home: Path, fset_id: int, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]], Any]:
    """Key-to-frame and Pilot figures per action, and the full collections seen while measuring."""
    from mistudio_tui.app import MiStudioApp
    from mistudio_tui.studio import Studio
    from mistudio_tui.ui.widgets.feature_table import FeatureTable

    studio = Studio(home)
    app = MiStudioApp(studio, offer_sample=False)
    frames: dict[str, list[float]] = {k: [] for k in (*FRAME_ONLY, *ACTIONS)}
    pilot_figures: dict[str, list[float]] = {k: [] for k in ACTIONS}
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            frame_probe(app)
            await pilot.pause()
            with FullCollections() as collections:
                measure = collections.measure
                for _ in range(repeats):
                    frames["floor"].append(await measure(key_to_frame(pilot, "z")))
                    pilot_figures["floor"].append(await measure(pilot_ms(pilot, "z")))

                def opened() -> bool:
                    tables = app.screen.query(FeatureTable)
                    return bool(tables) and tables.first().total > 0

                frames["open"].append(await measure(key_to_frame(pilot, "4", done=opened)))
                await pilot.pause()
                screen = app.screen
                table = screen.query_one(FeatureTable)
                if table.feature_set_id != fset_id or table.total == 0:
                    raise SystemExit(f"the browser opened feature set {table.feature_set_id}, not {fset_id}")
                for _ in range(repeats):
                    await type_keys(pilot, "1")
                    frames["reopen"].append(await measure(key_to_frame(pilot, "4", done=lambda: app.screen is screen)))
                    await type_keys(pilot, "1")
                    pilot_figures["reopen"].append(await measure(pilot_ms(pilot, "4")))
                for key, name in (("s", "sort"), ("j", "scroll")):
                    for _ in range(repeats):
                        frames[name].append(await measure(key_to_frame(pilot, key)))
                        await pilot.pause()
                        pilot_figures[name].append(await measure(pilot_ms(pilot, key)))
                for _ in range(repeats):
                    await asyncio.sleep(0.2)  # a single press (a held key redraws the pane at most every 0.12 s)
                    shown = lambda: screen.detail_index == table.selected_id  # noqa: E731
                    frames["detail"].append(await measure(key_to_frame(pilot, "j", done=shown)))
                for _ in range(repeats):
                    frames["end"].append(await measure(key_to_frame(pilot, "G")))
                    await type_keys(pilot, "g")
                    pilot_figures["end"].append(await measure(pilot_ms(pilot, "G")))
                    await type_keys(pilot, "g")
                for i in range(2 * repeats):
                    text = FILTERS[i // 2 % len(FILTERS)]
                    if i % 2 == 0:  # focus entering the filter box (the footer drops the keys the box takes)
                        frames["focus"].append(await measure(key_to_frame(pilot, "f")))
                        await pilot.pause()
                    await type_keys(pilot, "f", "end", *["backspace"] * 30, *text[:-1])
                    if i % 2 == 0:
                        ms = await measure(key_to_frame(pilot, text[-1], done=lambda t=text: screen.filter_text == t))
                        frames["filter"].append(ms)
                        await pilot.pause()
                        frames["enter"].append(await measure(key_to_frame(pilot, "enter")))
                    else:
                        ms = await measure(pilot_ms(pilot, text[-1], done=lambda t=text: screen.filter_text == t))
                        pilot_figures["filter"].append(ms)
                        pilot_figures["enter"].append(await measure(pilot_ms(pilot, "enter")))
                    await pilot.pause()
                for _ in range(repeats):
                    for text in LABELLED_FILTERS:
                        await type_keys(pilot, "s", "f", "end", *["backspace"] * 30, *text[:-1])
                        done = lambda t=text: screen.filter_text == t  # noqa: E731
                        frames["labelled"].append(await measure(key_to_frame(pilot, text[-1], done=done)))
                        await type_keys(pilot, "enter")
                await type_keys(pilot, "f", "end", *["backspace"] * 30, "enter")
                for i in range(2 * repeats):
                    query = SEARCHES[i // 2 % len(SEARCHES)]
                    await type_keys(pilot, "slash", "end", *["backspace"] * 12, *query[:-1])
                    if i % 2 == 0:
                        ms = await measure(
                            key_to_frame(pilot, query[-1], done=lambda q=query: table.filter.search == q)
                        )
                        frames["search"].append(ms)
                    else:
                        ms = await measure(pilot_ms(pilot, query[-1], done=lambda q=query: table.filter.search == q))
                        pilot_figures["search"].append(ms)
                    await type_keys(pilot, "escape")
            print(f"rows cached at the end: {table.cached_rows} (of {table.total:,} shown)")
    finally:
        studio.close()
    return frames, pilot_figures, collections


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
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            fset_id = pool.submit(build_home, str(home), args.features).result()
        frames, pilot_figures, collections = asyncio.run(run(home, fset_id, repeats))
    medians = {name: statistics.median(values) for name, values in frames.items()}
    print(f"{'':>7}  key→frame median (max)   pilot round trip median (of {repeats} each)")
    for name, value in medians.items():
        old = pilot_figures.get(name)
        shown = f"{name:>7}: {value:8.1f} ms ({max(frames[name]):6.1f})"
        print(shown + (f"  {statistics.median(old):8.1f} ms" if old else ""))
    print(collections.summary())
    print(bench_line("browser_key_floor", medians["floor"], "ms", "<", GOAL_MS))
    print(bench_line(f"browser_first_open_{args.features}", medians["open"], "ms", "<", FIRST_OPEN_GOAL_MS))
    for name in ("reopen", "sort", "filter", "labelled", "search", "scroll", "detail", "end", "focus", "enter"):
        print(bench_line(f"browser_{name}_{args.features}", medians[name], "ms", "<", GOAL_MS))


if __name__ == "__main__":
    main()
