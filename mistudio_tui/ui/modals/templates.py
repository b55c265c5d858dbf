"""Training templates in the TUI: a picker (favourites first, f/e/i/s/x keys) and a 'save as template' dialog."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, DataTable, Input, Label, Static

from mistudio_tui.db.models import Training, TrainingTemplate
from mistudio_tui.services import templates as svc
from mistudio_tui.ui.widgets.record_table import RecordTable

USER_ERRORS = (ValueError, FileNotFoundError, LookupError, PermissionError, OSError)


class TemplatePicker(ModalScreen[dict[str, Any] | None]):
    """Pick a training template. Dismisses with a copy of its config ({'sae': ..., 'train': ...}), or None on esc.

    Keys: enter picks, f toggles favourite, e exports to a path, i imports a file path, s saves the run given as
    `training` (if any) as a new template, x deletes.
    """

    DEFAULT_CSS = """
    TemplatePicker .dialog { width: 96; }
    TemplatePicker #template-path { display: none; }
    TemplatePicker #template-path.-open { display: block; }
    TemplatePicker #template-config { height: auto; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="templates.close"),
        Binding("enter", "pick", "Use", id="templates.pick", priority=False),
        Binding("f", "favourite", "Favourite", id="templates.favourite"),
        Binding("e", "export", "Export", id="templates.export"),
        Binding("i", "import", "Import", id="templates.import"),
        Binding("s", "save_training", "Save run", id="templates.save"),
        Binding("x", "delete", "Delete", id="templates.delete"),
    ]

    def __init__(self, training: Training | None = None) -> None:
        super().__init__()
        self.training = training
        self.path_mode: str | None = None  # 'export' | 'import' while the path box is open

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static("Training templates", classes="dialog-title")
            yield RecordTable([("star", "★", 1), ("name", "Name", 24), ("config", "Config", 50)], id="template-table")
            yield Static("", id="template-config", markup=False)
            yield Input(id="template-path")
            yield Static("", id="template-message", classes="form-error", markup=False)
            keys = "enter use · f favourite · e export · i import · x delete"
            if self.training is not None:
                keys += f" · s save '{self.training.name}'"
            yield Static(f"[dim]{keys} · esc close[/dim]", classes="dialog-note")

    def on_mount(self) -> None:
        self.table.styles.height = "auto"  # inline: the app stylesheet gives every DataTable 1fr
        self.table.styles.max_height = 14
        self.reload()
        self.table.focus()

    @property
    def table(self) -> RecordTable:
        return self.query_one("#template-table", RecordTable)

    @property
    def selected(self) -> TrainingTemplate | None:
        tid = self.table.selected_id
        return TrainingTemplate.get_or_none(TrainingTemplate.id == tid) if tid is not None else None

    def reload(self, select: int | None = None) -> None:
        rows = svc.list_templates()
        self.table.set_records(
            [(t.id, ("★" if t.favourite else " ", t.name, svc.describe_config(t.config))) for t in rows]
        )
        if select is not None:
            ids = [t.id for t in rows]
            if select in ids:
                self.table.move_cursor(row=ids.index(select))
        self.show_selected()

    def show_selected(self) -> None:
        tpl = self.selected
        text = "No templates yet: press i to import one" + (" or s to save this run" if self.training else "")
        if tpl is not None:
            text = svc.describe_config(tpl.config) + (f" · {tpl.description}" if tpl.description else "")
        self.query_one("#template-config", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_pick()

    def say(self, text: str) -> None:
        self.query_one("#template-message", Static).update(text)

    # --- actions ---------------------------------------------------------------------------------
    def action_close(self) -> None:
        if self.path_mode is not None:
            self._close_path()
            return
        self.dismiss(None)

    def action_pick(self) -> None:
        tpl = self.selected
        if tpl is not None:
            self.dismiss(svc.template_config(tpl.id))

    def action_favourite(self) -> None:
        tpl = self.selected
        if tpl is not None:
            tpl = svc.set_favourite(tpl.id)
            self.reload(select=tpl.id)

    def action_export(self) -> None:
        tpl = self.selected
        if tpl is not None:
            self._open_path("export", f"~/{tpl.name}.json", f"export '{tpl.name}' to (file or folder)")

    def action_import(self) -> None:
        self._open_path("import", "", "import template file (JSON)")

    def action_delete(self) -> None:
        tpl = self.selected
        if tpl is not None:
            svc.delete_template(tpl.id)
            self.say(f"deleted template '{tpl.name}'")
            self.reload()

    def action_save_training(self) -> None:
        if self.training is None:
            return

        def saved(template_id: int | None) -> None:
            if template_id is not None:
                self.reload(select=template_id)
                self.say("saved")

        try:
            modal = SaveTemplateModal(training=self.training)
        except USER_ERRORS as exc:  # e.g. an imported SAE whose config is not a training config
            self.say(f"⚠ {exc}")
            return
        self.app.push_screen(modal, saved)

    # --- the path box ----------------------------------------------------------------------------
    def _open_path(self, mode: str, value: str, placeholder: str) -> None:
        box = self.query_one("#template-path", Input)
        self.path_mode = mode
        box.value = value
        box.placeholder = placeholder
        box.add_class("-open")
        box.focus()
        self.say(f"{placeholder}; enter to {mode}, esc to cancel")

    def _close_path(self) -> None:
        self.path_mode = None
        self.query_one("#template-path", Input).remove_class("-open")
        self.table.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        mode, path = self.path_mode, event.value.strip()
        if mode is None or not path:
            return
        try:
            if mode == "export":
                tpl = self.selected
                if tpl is None:
                    return
                target = svc.export_template(tpl.id, path)
                self.say(f"exported to {target}")
                select = tpl.id
            else:
                tpl = svc.import_template(path)
                self.say(f"imported '{tpl.name}'")
                select = tpl.id
        except USER_ERRORS as exc:
            self.say(f"⚠ {exc}")
            return
        self._close_path()
        self.reload(select=select)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Letter keys type into the path box while it is open."""
        if self.path_mode is not None and action in (
            "pick",
            "favourite",
            "export",
            "import",
            "save_training",
            "delete",
        ):
            return False
        return not (action == "save_training" and self.training is None)


class SaveTemplateModal(ModalScreen[int | None]):
    """Save a configuration (a run's, or `config`) as a template. Dismisses with the new template's id, or None."""

    DEFAULT_CSS = """
    SaveTemplateModal #save-template-summary { height: auto; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="save_template.cancel"),
        Binding("ctrl+s", "save", "Save", id="save_template.save"),
    ]

    def __init__(self, training: Training | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if training is None and config is None:
            raise ValueError("SaveTemplateModal needs a training or a config")
        self.training = training
        self.config = svc.config_from_training(training) if training is not None else svc.validate_config(config)

    def compose(self) -> ComposeResult:
        default = f"{self.training.name}-template" if self.training is not None else ""
        with Vertical(id="dialog", classes="dialog"):
            yield Static("Save as template", classes="dialog-title")
            yield Static(svc.describe_config(self.config), id="save-template-summary", markup=False)
            yield Label("Name *", classes="field-label")
            yield Input(value=default, id="template-name")
            yield Label("Note", classes="field-label")
            note = f"from training '{self.training.name}'" if self.training is not None else ""
            yield Input(value=note, id="template-note")
            yield Checkbox("Favourite (listed first)", id="template-favourite")
            yield Checkbox("Overwrite a template of the same name", id="template-overwrite")
            yield Static("", id="save-template-error", classes="form-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Static("[dim]ctrl+s save · esc cancel[/dim]")

    def on_mount(self) -> None:
        self.query_one("#template-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        name = self.query_one("#template-name", Input).value
        note = self.query_one("#template-note", Input).value.strip()
        favourite = self.query_one("#template-favourite", Checkbox).value
        overwrite = self.query_one("#template-overwrite", Checkbox).value
        try:
            tpl = svc.save_template(name, self.config, note, favourite=favourite, overwrite=overwrite)
        except USER_ERRORS as exc:
            self.query_one("#save-template-error", Static).update(f"⚠ {exc}")
            return
        if favourite and not tpl.favourite:
            tpl = svc.set_favourite(tpl.id, True)
        self.dismiss(tpl.id)
