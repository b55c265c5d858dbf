"""Views of the steering analysis: a co-occurrence heatmap grid and the plotext 2-D decoder map."""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static
from textual_plotext import PlotextPlot

CELL = 7  # characters per heatmap cell
MAP_POINT_BUDGET = 4000  # plotting more points than terminal cells only costs time
GROUP_COLOURS = ("gray", "cyan", "green", "yellow", "magenta")


class CooccurrenceHeatmap(Static):
    """Jaccard overlap of a group of features as a shaded grid (plotext's matrix plot leaves gaps between cells)."""

    def show(self, features: Sequence[int], jaccard: Sequence[Sequence[float]]) -> None:
        """Draw one cell per pair, darker to brighter with the overlap, with its value inside."""
        self.update(heatmap_text(features, jaccard))


def heatmap_text(features: Sequence[int], jaccard: Sequence[Sequence[float]]) -> Text:
    """The grid as Rich text: a header of feature ids, then one labelled row per feature."""
    text = Text("co-occurrence (Jaccard)\n", style="bold")
    if not features:
        return text.append("no features", style="dim")
    label = max(len(f"#{f}") for f in features) + 1
    text.append(" " * label + "".join(f"{'#' + str(f):>{CELL}}" for f in features) + "\n")
    for f, row in zip(features, jaccard, strict=True):
        text.append(f"{'#' + str(f):<{label}}")
        for value in row:
            level = max(0.0, min(1.0, float(value)))
            shade = int(40 + 200 * level)
            style = Style(
                bgcolor=Color.from_rgb(shade // 3, shade // 2, shade), color="white" if level < 0.6 else "black"
            )
            text.append(f"{value:>{CELL - 1}.2f} ", style=style)
        text.append("\n")
    return text


class DecoderMap(PlotextPlot):
    """Every feature's decoder direction as a point; the selected features drawn on top in another colour."""

    groups_drawn: list[str] = []

    def show(
        self,
        coords: Sequence[Sequence[float]],
        selected: Sequence[int],
        method: str,
        groups: dict[str, list[int]] | None = None,
    ) -> None:
        """Scatter `coords` [[x, y] per feature], coloured by `groups` (name → feature indices), `selected` on top."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"decoder directions ({method})")
        self.groups_drawn = []
        step = max(1, len(coords) // MAP_POINT_BUDGET)
        if groups:
            for (name, indices), colour in zip(groups.items(), GROUP_COLOURS, strict=False):
                points = [coords[i] for i in indices[::step] if 0 <= i < len(coords)]
                if points:
                    label = f"{name} ({len(indices):,})"
                    plt.scatter([c[0] for c in points], [c[1] for c in points], marker="dot", color=colour, label=label)
                    self.groups_drawn.append(label)
        else:
            shown = coords[::step]
            if shown:
                plt.scatter([c[0] for c in shown], [c[1] for c in shown], marker="dot", color="gray")
        picked = [i for i in selected if 0 <= i < len(coords)]
        if picked:
            plt.scatter(
                [coords[i][0] for i in picked],
                [coords[i][1] for i in picked],
                marker="●",
                color="red",
                label=", ".join(f"#{i}" for i in picked),
            )
        self.refresh()
