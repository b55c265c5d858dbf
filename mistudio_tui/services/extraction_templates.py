"""Extraction templates: named, reusable activation-extraction settings; favourites, JSON export and import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.db.models import ExtractionTemplate
from mistudio_tui.services.template_store import TemplateStore

FORMAT_NAME = "mistudio.extraction-template"
FORMAT_VERSION = 1
STORE_DTYPES = ("float32", "float16", "bfloat16")
EXTRACTION_DEFAULTS: dict[str, Any] = {
    "hooks": [],
    "n_tokens": 200_000,
    "batch_size": 8,
    "shard_tokens": 65_536,
    "store_dtype": "float32",
    "exclude_bos": True,
    "exclude_special": True,
    "device": "auto",
}
_POSITIVE_INTS = ("n_tokens", "batch_size", "shard_tokens")
_BOOLS = ("exclude_bos", "exclude_special")


def check_config(config: dict[str, Any], where: str = "template") -> dict[str, Any]:
    """The template settings with their types checked; ValueError naming `where` and the field otherwise."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the settings must be a JSON object, not {type(config).__name__}")
    unknown = sorted(set(config) - set(EXTRACTION_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(EXTRACTION_DEFAULTS)}")
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is None:
            continue
        if key == "hooks":
            hooks = [value] if isinstance(value, str) else value
            if not isinstance(hooks, list) or not all(isinstance(h, str) and h.strip() for h in hooks):
                raise ValueError(f"{where}: hooks must be a list of hook point names, not {value!r}")
            out[key] = [h.strip() for h in hooks]
        elif key in _POSITIVE_INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{where}: {key} must be a positive whole number, not {value!r}")
            out[key] = value
        elif key in _BOOLS:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {key} must be true or false, not {value!r}")
            out[key] = value
        elif key == "store_dtype":
            if value not in STORE_DTYPES:
                raise ValueError(f"{where}: store_dtype must be one of {', '.join(STORE_DTYPES)}, not {value!r}")
            out[key] = value
        elif key == "device":
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: device must be a name like auto, cpu or cuda:0, not {value!r}")
            out[key] = value.strip()
    return out


def _check_template(config: Any, where: str) -> dict[str, Any]:
    """`check_config`, also refusing a template without settings."""
    settings = check_config(config, where)
    if not settings:
        raise ValueError(f"{where}: give at least one setting (e.g. --hook, --tokens)")
    return settings


STORE: TemplateStore[ExtractionTemplate] = TemplateStore(
    ExtractionTemplate, FORMAT_NAME, FORMAT_VERSION, "extraction template", _check_template
)


def list_templates() -> list[ExtractionTemplate]:
    """Every template, favourites first, then by name."""
    return STORE.list_all()


def get_template(ref: str | int) -> ExtractionTemplate:
    """The template with this id or name."""
    return STORE.get(ref)


def template_config(ref: str | int | None) -> dict[str, Any]:
    """The settings of a template (empty without one)."""
    return STORE.config(ref)


def save_template(
    name: str,
    config: dict[str, Any],
    description: str = "",
    favourite: bool | None = None,
    overwrite: bool = False,
) -> ExtractionTemplate:
    """Create a template (or replace one of the same name when `overwrite`)."""
    return STORE.save(name, config, description, favourite, overwrite)


def set_favourite(ref: str | int, favourite: bool | None = None) -> ExtractionTemplate:
    """Mark or unmark a template as a favourite (toggle when `favourite` is None)."""
    return STORE.set_favourite(ref, favourite)


def delete_template(ref: str | int) -> str:
    """Delete a template; returns its name (activation sets made with it keep their own settings)."""
    return STORE.delete(ref)


def template_document(row: ExtractionTemplate) -> dict[str, Any]:
    """The portable JSON form of a template."""
    return STORE.document(row)


def export_template(ref: str | int, path: str | Path) -> Path:
    """Write a template to a JSON file (a folder gets `<name>.json`)."""
    return STORE.export(ref, path)


def import_template(path: str | Path, name: str | None = None, overwrite: bool = False) -> ExtractionTemplate:
    """Read a template exported by `export_template` and store it (as `name` if given)."""
    return STORE.import_file(path, name, overwrite)
