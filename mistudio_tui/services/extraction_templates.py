"""Extraction templates: named, reusable activation-extraction settings; favourites, JSON export and import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.db.models import ExtractionTemplate
from mistudio_tui.jobs.kinds.activations import EXTRACTION_DEFAULTS as EXTRACTION_DEFAULTS  # the forms' defaults
from mistudio_tui.jobs.kinds.activations import STORE_DTYPES as STORE_DTYPES  # and choices
from mistudio_tui.jobs.kinds.activations import check_settings
from mistudio_tui.services.template_store import TemplateStore

FORMAT_NAME = "mistudio.extraction-template"
FORMAT_VERSION = 1


def _check_template(config: Any, where: str) -> dict[str, Any]:
    """`check_settings`, also refusing a template without settings."""
    settings = check_settings(config, where)
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
