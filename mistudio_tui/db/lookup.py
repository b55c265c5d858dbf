"""Find rows by id or unique name, as every CLI command and palette entry accepts either."""

from __future__ import annotations

from typing import TypeVar

from mistudio_tui.db.cascade import NOUNS
from mistudio_tui.db.models import ID_LIKE, BaseModel, refuse_id_like_name

M = TypeVar("M", bound=BaseModel)


class NotFound(LookupError):
    """No row matches the reference the user gave."""


def resolve(model: type[M], ref: str | int) -> M:
    """The row of `model` whose id or name is `ref`; a clear error otherwise."""
    noun = NOUNS.get(model._meta.table_name, (model._meta.table_name.replace("_", " "),))[0]
    text = str(ref).strip()
    if not text:
        raise NotFound(f"no {noun} given")
    row = None
    if ID_LIKE.fullmatch(text):  # ids win: names may not look like ids (refuse_id_like_name)
        row = model.get_or_none(model.id == int(text.lstrip("#")))
    elif "name" in model._meta.fields:
        row = model.get_or_none(model._meta.fields["name"] == text)
    if row is None:
        names = []
        if "name" in model._meta.fields:
            latest = model.select(model._meta.fields["name"]).order_by(model.id.desc()).limit(8)
            names = list(latest.scalars())
        hint = f"; known: {', '.join(names)}" if names else f"; there are no {noun}s yet"
        raise NotFound(f"no {noun} with id or name {text!r}{hint}")
    return row


def new_name(model: type[BaseModel], requested: str | None, default: str) -> str:
    """The name a user asked for (refused if taken or id-like), else a free one made from `default`."""
    if requested:
        refuse_id_like_name(requested)
        if model.get_or_none(model._meta.fields["name"] == requested) is not None:
            raise ValueError(f"the name {requested!r} is taken; choose another with --name")
        return requested
    return unique_name(model, default)


def unique_name(model: type[BaseModel], base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free (prefixed with the noun if `base` reads as an id)."""
    base = base.strip() or model._meta.table_name
    if ID_LIKE.fullmatch(base):
        base = f"{model._meta.table_name.replace('_', '-')}-{base}"
    name = model._meta.fields["name"]
    if model.get_or_none(name == base) is None:
        return base
    n = 2
    while model.get_or_none(name == f"{base}-{n}") is not None:
        n += 1
    return f"{base}-{n}"
