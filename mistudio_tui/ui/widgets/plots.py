"""Plotext plots sized to their region: line curves (optionally log-y, with a min/max band) and bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from textual_plotext import PlotextPlot


def thin(xs: Sequence[float], ys: Sequence[float], budget: int, keep: str = "both") -> tuple[list[float], list[float]]:
    """At most about `budget` points: per bucket its lowest and/or highest point, in x order (spikes survive)."""
    n = len(xs)
    if n <= budget:
        return list(xs), list(ys)
    buckets = max(1, budget // (2 if keep == "both" else 1))
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        idx = [i for i in range(lo, hi) if ys[i] == ys[i]]  # NaN (log of a non-positive value) never wins
        if not idx:
            continue
        low = min(idx, key=ys.__getitem__)
        high = max(idx, key=ys.__getitem__)
        picks = {"min": [low], "max": [high]}.get(keep, sorted({low, high}))
        for i in picks:
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


class CurvePlot(PlotextPlot):
    """One or more named series on shared axes; `set_series` replaces them and redraws."""

    def __init__(self, title: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.series: list[tuple[str, Sequence[float], Sequence[float]]] = []
        self.band: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None
        self.log_y = False
        self.x_label = "step"

    def set_series(
        self,
        series: list[tuple[str, Sequence[float], Sequence[float]]],
        title: str | None = None,
        log_y: bool | None = None,
        band: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.series = series
        self.band = band
        if title is not None:
            self.title = title
        if log_y is not None:
            self.log_y = log_y
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel(self.x_label)
        drawn = False
        budget = max(2 * (self.size.width or 80), 64)  # about one point per braille dot column
        if self.band is not None and self.band[0]:
            xs, lows, highs = self.band
            plt.plot(*thin(xs, self._y(highs), budget, keep="max"), color="gray", marker="dot")
            plt.plot(*thin(xs, self._y(lows), budget, keep="min"), color="gray", marker="dot")
        for label, xs, ys in self.series:
            if xs:
                plt.plot(
                    *thin(xs, self._y(ys), budget),
                    label=label if len(self.series) > 1 else None,
                    marker="braille",
                )
                drawn = True
        if self.log_y and drawn:
            plt.ylabel("log10")
        if not drawn:
            plt.text("no data yet", x=0.5, y=0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        self.refresh()

    def _y(self, ys: Sequence[float]) -> list[float]:
        if not self.log_y:
            return list(ys)
        return [math.log10(y) if y and y > 0 else float("nan") for y in ys]


class BarPlot(PlotextPlot):
    """A histogram drawn from bin edges and counts."""

    def __init__(self, title: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title

    def set_histogram(self, edges: Sequence[float], counts: Sequence[int], xlabel: str = "") -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        if counts:
            centers = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
            plt.bar(centers, list(counts), width=0.9 * (edges[1] - edges[0]) if len(edges) > 1 else 1)
            ticks = [edges[0] + (edges[-1] - edges[0]) * i / 4 for i in range(5)]
            plt.xticks(ticks, [f"{t:.3g}" for t in ticks])  # fixed ticks: plotext's own choice is not stable
            if xlabel:
                plt.xlabel(xlabel)
        else:
            plt.text("no data", x=0.5, y=0.5, alignment="center")
        self.refresh()
