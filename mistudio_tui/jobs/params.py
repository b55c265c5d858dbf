"""A job kind's parameters as one typed, validated value, stored in the job row as plain JSON.

Each kind declares a frozen dataclass subclassing `JobParams` (in `jobs/kinds/`); its `__post_init__` is the one place
its values are checked. `to_json` writes the same nested layout the job row has always held (nested dataclasses as
objects, paths as text, tuples as lists), so rows written before the classes existed read back unchanged, and the
home-relative path rule of `db.home_params` still applies by key.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, Union


class ParamsError(ValueError):
    """A job's stored parameters do not fit its kind's class (named, with the offending field)."""


class FieldError(ValueError):
    """A value that would be refused; `field` names it, so a form can focus that field and say why beside it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobParams:
    """Base of every kind's parameters (`kind`: the job kind's name, used in error messages)."""

    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The row's JSON: only fields that differ from None are written, nested values in their JSON form."""
        return {
            f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from a row's JSON; unknown keys and wrong types are refused with the field's name."""
        loaded: Self = _load_dataclass(cls, data, cls.kind or cls.__name__)
        return loaded


def _dump(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict()  # the ml configs keep their own layout (and their own validation on the way back)
    if isinstance(value, JobParams):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _load_dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected an object, got {type(data).__name__}")
    from_dict = getattr(cls, "from_dict", None)
    if from_dict is not None and not issubclass(cls, JobParams):
        try:
            return from_dict(dict(data))
        except (TypeError, KeyError) as exc:  # a required field missing from a stored row
            raise ParamsError(f"{where}: {exc}") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {name: _load(hints[name], data[name], f"{where}.{name}") for name in fields if name in data}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field missing
        raise ParamsError(f"{where}: {exc}") from None


def _load(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _load(arg, value, where)
            except (ParamsError, ValueError, TypeError):
                continue
        raise ParamsError(f"{where}: {value!r} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ParamsError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _load_dataclass(hint, value, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected an object, got {type(value).__name__}")
        item = args[1] if len(args) == 2 else Any
        return {k: _load(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ParamsError(f"{where}: expected a path, got {type(value).__name__}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(hint, type) and not isinstance(value, hint)) or (hint in (int, float) and isinstance(value, bool)):
        raise ParamsError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}")
    return value
