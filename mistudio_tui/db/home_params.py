"""Job params keep their paths under MISTUDIO_HOME relative to it, so a job queued, re-run or resumed after the home
was copied or moved works on the files in their new place.

Only the entries named in PATH_KEYS hold paths, at any depth (a group job's `members`, a training's `source` and
`eval`). Such an entry holds an absolute path, or text that is not a path at all (a hub id such as `gpt2`), so an
absolute path inside the home is stored marked, `$MISTUDIO_HOME/saes/3-run`, and read back joined to the home the
database is opened from now. Everything else (prompts, labels, hub ids, paths outside the home) is stored as given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import JSONField, Node

from mistudio_tui.db.home_paths import field_home, from_stored, to_stored

# The params keys whose values are paths (or hub ids, where a model or tokenizer may come from either), in every kind.
PATH_KEYS: frozenset[str] = frozenset(
    {
        "dataset_dir",
        "dataset_path",
        "datasets_dir",
        "dir",
        "feature_dir",
        "model_name",
        "model_path",
        "models_dir",
        "out_dir",
        "path",
        "sae_dir",
        "source",
        "tokenization_dir",
        "tokenizer",
    }
)
HOME_MARK = "$MISTUDIO_HOME/"

StoredText = Callable[[str, Path], str]


def store_params(params: Any, home: Path | None, stored: StoredText = to_stored) -> Any:
    """`params` as stored: each absolute path under `home` in a path entry becomes marked home-relative text
    (`stored` maps an absolute path to its relative text, or returns it unchanged when it lies elsewhere)."""
    if home is None:
        return params
    return _convert(params, lambda text: _marked(text, home, stored))


def load_params(params: Any, home: Path | None) -> Any:
    """`params` as Python code sees them: each marked path entry joined to `home`."""
    if home is None:
        return params
    return _convert(params, lambda text: _unmarked(text, home))


def _convert(value: Any, convert: Callable[[str], str]) -> Any:
    """A copy of `value` with `convert` applied to the text of every path entry, however deep."""
    if isinstance(value, dict):
        return {
            key: convert(item) if key in PATH_KEYS and isinstance(item, str) else _convert(item, convert)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_convert(item, convert) for item in value]
    return value


def _marked(text: str, home: Path, stored: StoredText) -> str:
    if not os.path.isabs(text):  # a hub id, or text already marked
        return text
    relative = stored(text, home)
    return text if os.path.isabs(relative) else HOME_MARK + relative


def _unmarked(text: str, home: Path) -> str:
    return from_stored(text.removeprefix(HOME_MARK), home) if text.startswith(HOME_MARK) else text


class HomeParamsField(JSONField):
    """A JSON params column whose path entries are stored relative to the database's home when inside it."""

    def db_value(self, value: Any) -> Any:
        if value is not None and not isinstance(value, Node):
            value = store_params(value, field_home(self))
        return super().db_value(value)  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs

    def python_value(self, value: Any) -> Any:
        return load_params(super().python_value(value), field_home(self))  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
