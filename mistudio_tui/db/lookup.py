"""Find rows by id or unique name, as every CLI command and palette entry accepts either."""

from __future__ import annotations

from typing import TypeVar

from peewee import Model

from mistudio_tui.db.cascade import NOUNS

M = TypeVar("M", bound=Model)


class NotFound(LookupError):
    """No row matches the reference the user gave."""


def resolve(model: type[M], ref: str | int) -> M:
    """The row of `model` whose id or name is `ref`; a clear error otherwise."""
    noun = NOUNS.get(model._meta.table_name, (model._meta.table_name.replace("_", " "),))[0]
    text = str(ref).strip()
    if not text:
        raise NotFound(f"no {noun} given")
    row = None
    if "name" in model._meta.fields:
        row = model.get_or_none(model.name == text)
    if row is None and text.lstrip("#").isdigit():
        row = model.get_or_none(model.id == int(text.lstrip("#")))
    if row is None:
        names = []
        if "name" in model._meta.fields:
            names = [r.name for r in model.select(model.name).order_by(model.id.desc()).limit(8)]
        hint = f"; known: {', '.join(names)}" if names else f"; there are no {noun}s yet"
        raise NotFound(f"no {noun} with id or name {text!r}{hint}")
    return row


def unique_name(model: type[Model], base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free."""
    base = base.strip() or model._meta.table_name
    if model.get_or_none(model.name == base) is None:
        return base
    n = 2
    while model.get_or_none(model.name == f"{base}-{n}") is not None:
        n += 1
    return f"{base}-{n}"
