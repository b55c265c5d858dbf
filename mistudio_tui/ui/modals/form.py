"""A small declarative form in a modal: text, number, choice and yes/no fields, validated on submit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from mistudio_tui.ui.actions import USER_ERRORS
from mistudio_tui.units import parse_count


@dataclass
class Field:
    """One form field. kind: text | int | float | choice | bool."""

    name: str
    label: str
    kind: str = "text"
    default: Any = None
    choices: Sequence[tuple[str, Any]] = ()
    required: bool = False
    help: str = ""
    placeholder: str = ""
    validate: Callable[[Any], str | None] | None = field(default=None, repr=False)


class FormError(ValueError):
    """A field failed validation; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def parse_value(spec: Field, raw: Any) -> Any:
    """Convert a widget value to the field's type; FormError naming the field when it does not parse."""
    if spec.kind == "bool":
        return bool(raw)
    if spec.kind == "choice":
        if raw is Select.NULL or raw is None:
            if spec.required:
                raise FormError(spec.name, f"{spec.label}: choose one")
            return None
        return raw
    text = ("" if raw is None else str(raw)).strip()
    if not text:
        if spec.required:
            raise FormError(spec.name, f"{spec.label} is required")
        return None
    if spec.kind == "int":
        try:
            return parse_count(text, spec.label)
        except ValueError as exc:
            raise FormError(spec.name, str(exc)) from None
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise FormError(spec.name, f"{spec.label}: {text!r} is not a number") from None
    return text


class FormModal(ModalScreen[dict[str, Any] | None]):
    """Returns the parsed values, or None if cancelled. ctrl+s or Enter on the last field submits.

    With `build`, submitting also calls it with the values; a user error it raises stays in the form (nothing typed is
    lost) and what it returns is kept in `built`. An error naming a field (FormError, or a user error with a `field`
    attribute naming one of the form's fields) focuses that field and shows the message beside it.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "submit", "Submit", id="form.submit"),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        submit_label: str = "Start",
        note: str = "",
        check: Callable[[dict[str, Any]], str | None] | None = None,
        build: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__()
        self.build = build
        self.built: Any = None
        self.form_title = title
        self.fields = list(fields)
        self.submit_label = submit_label
        self.note = note
        self.check = check

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="dialog form"):
            yield Static(self.form_title, classes="dialog-title", markup=False)
            if self.note:
                yield Static(self.note, classes="dialog-note", markup=False)
            for spec in self.fields:
                yield from self._compose_field(spec)
            yield Static("", id="form-error", classes="form-error", markup=False)  # messages name files and ids
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.submit_label} (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    def _compose_field(self, spec: Field) -> ComposeResult:
        wid = f"field-{spec.name}"
        if spec.kind == "bool":
            yield Checkbox(spec.label, value=bool(spec.default), id=wid)
        elif spec.kind == "choice":
            yield Label(spec.label + (" *" if spec.required else ""), classes="field-label")
            options = [(label, value) for label, value in spec.choices]
            default = spec.default if any(v == spec.default for _, v in options) else Select.NULL
            yield Select(options, value=default, id=wid, allow_blank=not spec.required or default is Select.NULL)
        else:
            yield Label(spec.label + (" *" if spec.required else ""), classes="field-label")
            value = "" if spec.default is None else str(spec.default)
            yield Input(value=value, placeholder=spec.placeholder, id=wid)
        if spec.help:
            yield Static(spec.help, classes="field-help")
        problem = Static("", id=f"error-{spec.name}", classes="form-error field-error", markup=False)
        problem.display = False
        yield problem

    def on_mount(self) -> None:
        first = self.query("Input, Select, Checkbox").first()
        first.focus()

    def values(self) -> dict[str, Any]:
        """Parse every field; raises FormError naming the first bad one."""
        out: dict[str, Any] = {}
        for spec in self.fields:
            widget = cast("Input | Select[Any] | Checkbox", self.query_one(f"#field-{spec.name}"))  # see compose
            raw = widget.value
            value = parse_value(spec, raw)
            if spec.validate is not None and value is not None:
                problem = spec.validate(value)
                if problem:
                    raise FormError(spec.name, f"{spec.label}: {problem}")
            out[spec.name] = value
        if self.check is not None:  # returns a message, or raises FormError naming the field
            problem = self.check(out)
            if problem:
                raise FormError("", problem)
        return out

    def action_submit(self) -> None:
        for box in self.query(".field-error"):
            box.display = False
        try:
            values = self.values()
            if self.build is not None:
                self.built = self.build(values)
        except USER_ERRORS as exc:
            self.show_error(str(exc), getattr(exc, "field", ""))
            return
        self.dismiss(values)

    def show_error(self, message: str, field_name: str = "") -> None:
        """Say what is wrong: beside the field it names (focused), else under the fields."""
        error = self.query_one("#form-error", Static)
        if field_name and any(spec.name == field_name for spec in self.fields):
            error.update("")
            beside = self.query_one(f"#error-{field_name}", Static)
            beside.update(f"⚠ {message}")
            beside.display = True
            widget = self.query_one(f"#field-{field_name}")
            widget.focus()
            widget.scroll_visible()
        else:
            error.update(f"⚠ {message}")
        self.notify(message, severity="error", timeout=8)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if inputs and event.input is inputs[-1]:
            self.action_submit()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)
