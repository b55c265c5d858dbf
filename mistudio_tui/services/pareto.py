"""The sparsity–fidelity Pareto front: points no other point beats on both axes (torch-free)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard


def _usable(value: float | None) -> TypeGuard[float]:
    return value is not None and not math.isnan(value)


def pareto_front(
    points: Sequence[tuple[float | None, float | None]],
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> list[int]:
    """Indices of the non-dominated points, ordered by x (best x first); points with a missing value are skipped.

    With the defaults, x is a cost (L0) and y a fidelity (explained variance): a point is dominated when
    another has x no worse and y no worse, and is strictly better on one of them. Duplicates all stay.
    """
    sx = 1.0 if minimize_x else -1.0
    sy = -1.0 if maximize_y else 1.0
    keyed = [(sx * x, sy * y, i) for i, (x, y) in enumerate(points) if _usable(x) and _usable(y)]
    keyed.sort()
    front: list[int] = []
    best_y = math.inf
    last: tuple[float, float] | None = None
    for x, y, i in keyed:
        if y < best_y or (last is not None and (x, y) == last):
            front.append(i)
            best_y = min(best_y, y)
            last = (x, y)
    return front


def is_on_front(points: Sequence[tuple[float | None, float | None]], **options: bool) -> list[bool]:
    """For each point, whether it lies on the Pareto front."""
    front = set(pareto_front(points, **options))
    return [i in front for i in range(len(points))]
