"""The template verbs extraction (`activations templates …`) and training (`templates …`) templates share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from mistudio_tui.cli.output import emit, format_table
from mistudio_tui.services.template_store import T, TemplateStore
from mistudio_tui.studio import Studio


@dataclass(frozen=True)
class TemplateCli(Generic[T]):
    """How one kind of template is listed and shown on the command line."""

    store: TemplateStore[T]
    columns: Sequence[tuple[str, str]]  # table columns; "star" is the favourite mark
    summary: Callable[[T], dict[str, Any]]  # a `list` row (also what `favourite` prints)
    detail: Callable[[T], dict[str, Any]]  # what `show`, `save` and `import` print
    human: Callable[[T], str]  # `show` for people

    def add_verbs(
        self,
        verbs: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
        add_save: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None],
    ) -> None:
        """Add list, show, export, import, favourite and delete; `add_save` adds the kind's own `save`."""
        p = verbs.add_parser("list", help="list templates, favourites first", parents=[common])
        p.set_defaults(func=self.cmd_list)
        p = verbs.add_parser("show", help="show one template", parents=[common])
        p.add_argument("ref", metavar="TEMPLATE", help="id or name")
        p.set_defaults(func=self.cmd_show)
        add_save(verbs)
        p = verbs.add_parser("export", help="write a template to a JSON file", parents=[common])
        p.add_argument("ref", metavar="TEMPLATE", help="id or name")
        p.add_argument("path", help="a .json file or a folder")
        p.set_defaults(func=self.cmd_export)
        p = verbs.add_parser("import", help="add a template from an exported JSON file", parents=[common])
        p.add_argument("path")
        p.add_argument("--name", help="store it under this name instead of the file's")
        p.add_argument("--overwrite", action="store_true", help="replace a template of the same name")
        p.set_defaults(func=self.cmd_import)
        p = verbs.add_parser("favourite", help="mark a template as a favourite (--off to unmark)", parents=[common])
        p.add_argument("ref", metavar="TEMPLATE", help="id or name")
        p.add_argument("--off", action="store_true", help="remove the mark")
        p.set_defaults(func=self.cmd_favourite)
        p = verbs.add_parser(
            "delete", help="delete a template (what was made with it keeps its settings)", parents=[common]
        )
        p.add_argument("ref", metavar="TEMPLATE", help="id or name")
        p.set_defaults(func=self.cmd_delete)

    def cmd_list(self, args: argparse.Namespace, studio: Studio) -> None:
        """Print every template, favourites first."""
        rows = [self.summary(t) for t in self.store.list_all()]
        table = [{**r, "star": "★" if r.get("favourite") else ""} for r in rows]
        emit(args.json, rows, lambda: format_table(table, self.columns))

    def cmd_show(self, args: argparse.Namespace, studio: Studio) -> None:
        """Print one template."""
        row = self.store.get(args.ref)
        emit(args.json, self.detail(row), lambda: self.human(row))

    def show_saved(self, args: argparse.Namespace, row: T, done: str) -> None:
        """Print a template just saved or imported (`done` says which)."""
        emit(args.json, self.detail(row), lambda: f"{done} template '{row.name}' (id {row.id})\n{self.human(row)}")

    def cmd_export(self, args: argparse.Namespace, studio: Studio) -> None:
        """Write a template to a JSON file."""
        path = self.store.export(args.ref, args.path)
        emit(args.json, {"path": str(path)}, f"wrote {path}")

    def cmd_import(self, args: argparse.Namespace, studio: Studio) -> None:
        """Add a template from an exported file."""
        self.show_saved(args, self.store.import_file(args.path, args.name, args.overwrite), "imported")

    def cmd_favourite(self, args: argparse.Namespace, studio: Studio) -> None:
        """Mark or unmark a favourite."""
        row = self.store.set_favourite(args.ref, not args.off)
        mark = "is now a favourite" if row.favourite else "is no longer a favourite"
        emit(args.json, self.summary(row), f"template '{row.name}' {mark}")

    def cmd_delete(self, args: argparse.Namespace, studio: Studio) -> None:
        """Delete a template."""
        row = self.store.get(args.ref)
        name = self.store.delete(row.id)
        emit(args.json, {"id": row.id, "name": name, "deleted": True}, f"deleted template '{name}'")
