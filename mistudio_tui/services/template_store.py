"""Named, favouritable templates in one table with a versioned JSON file form (extraction and training templates)."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import ExtractionTemplate, TrainingTemplate, database, utcnow
from mistudio_tui.db.ownership import slug

T = TypeVar("T", ExtractionTemplate, TrainingTemplate)  # the template tables (the same columns)

# (config, where) -> the cleaned config; raises ValueError naming `where` and the bad field.
Validate = Callable[[Any, str], dict[str, Any]]


@dataclass(frozen=True)
class TemplateStore(Generic[T]):
    """The verbs of one template table: `model` has name, description, config, favourite, created_at, updated_at."""

    model: type[T]
    format_name: str
    format_version: int
    noun: str  # "training template"; names the file kind in messages
    validate: Validate
    description_key: str = "description"  # the file field that holds the description

    def list_all(self) -> list[T]:
        """Every template, favourites first, then by name (ignoring case)."""
        m = self.model
        return list(m.select().order_by(m.favourite.desc(), m.name.collate("NOCASE")))

    def get(self, ref: str | int) -> T:
        """The template with this id or name."""
        return resolve(self.model, ref)

    def config(self, ref: str | int | None) -> dict[str, Any]:
        """A copy of a template's settings (empty without one)."""
        return {} if ref is None else copy.deepcopy(self.get(ref).config)

    def save(
        self,
        name: str,
        config: Any,
        description: str = "",
        favourite: bool | None = None,
        overwrite: bool = False,
    ) -> T:
        """Create a template, or replace the one of the same name when `overwrite` (None keeps its favourite mark)."""
        name = name.strip()
        if not name:
            raise ValueError("a template needs a name")
        settings = self.validate(config, f"template {name!r}")
        with database.atomic():
            row = self.model.get_or_none(self.model.name == name)
            if row is not None and not overwrite:
                raise ValueError(f"a template named {name!r} exists; choose another name or overwrite it (--overwrite)")
            if row is None:
                row = self.model(name=name)
            row.config = settings
            row.description = description or ""
            if favourite is not None:
                row.favourite = favourite
            row.updated_at = utcnow()
            row.save()
        return row

    def set_favourite(self, ref: str | int, favourite: bool | None = None) -> T:
        """Mark or unmark a template as a favourite (toggle when `favourite` is None)."""
        row = self.get(ref)
        row.favourite = (not row.favourite) if favourite is None else favourite
        row.updated_at = utcnow()
        row.save()
        return row

    def delete(self, ref: str | int) -> str:
        """Delete a template; returns its name."""
        row = self.get(ref)
        row.delete_instance()
        return row.name

    def document(self, row: T) -> dict[str, Any]:
        """The portable JSON form of a template."""
        return {
            "format": self.format_name,
            "version": self.format_version,
            "name": row.name,
            self.description_key: row.description,
            "favourite": bool(row.favourite),
            "config": copy.deepcopy(row.config),
        }

    def export(self, ref: str | int, path: str | Path) -> Path:
        """Write a template to a JSON file, replacing it whole (a folder gets `<name>.json`)."""
        row = self.get(ref)
        target = Path(path).expanduser()
        if target.is_dir():
            target = target / f"{slug(row.name, 'template')}.json"
        if not target.parent.is_dir():
            raise FileNotFoundError(f"folder not found: {target.parent}")
        text = json.dumps(self.document(row), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def read(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """An exported file, checked: {'name' (`name` if given), 'description', 'favourite', 'config'}."""
        source = Path(path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"{self.noun} file not found: {source}")
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{source}: not a JSON file ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != self.format_name:
            article = "an" if self.noun[:1] in "aeiou" else "a"
            raise ValueError(f'{source}: not {article} {self.noun} (expected "format": "{self.format_name}")')
        version = document.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"{source}: field 'version' must be a whole number from 1, not {version!r}")
        if version > self.format_version:
            raise ValueError(
                f"{source}: {self.noun} format version {version} is not supported: it is newer than this miStudio "
                f"reads ({self.format_version}); upgrade miStudio"
            )
        chosen = name or document.get("name")
        if not isinstance(chosen, str) or not chosen.strip():
            raise ValueError(f"{source}: field 'name' is missing; give one with --name")
        description = document.get(self.description_key) or ""
        if not isinstance(description, str):
            raise ValueError(f"{source}: field {self.description_key!r} must be text")
        return {
            "name": chosen.strip(),
            "description": description,
            "favourite": bool(document.get("favourite", False)),
            "config": self.validate(document.get("config"), str(source)),
        }

    def import_file(self, path: str | Path, name: str | None = None, overwrite: bool = False) -> T:
        """Store a template read from an exported file (as `name` if given; `overwrite` replaces one of that name)."""
        doc = self.read(path, name)
        return self.save(doc["name"], doc["config"], doc["description"], doc["favourite"], overwrite)
