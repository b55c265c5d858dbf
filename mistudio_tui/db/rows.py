"""Query results in the shape peewee returns them where its bundled stubs cannot say so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from peewee import ModelSelect


def tuples(query: ModelSelect[Any]) -> Iterator[tuple[Any, ...]]:
    """The rows of `query` as plain tuples (`query.tuples()`, whose rows the stubs type as model instances)."""
    return iter(cast("list[tuple[Any, ...]]", query.tuples()))
