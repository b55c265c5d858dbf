"""First run: offer to build the offline sample (and optionally run the whole pipeline on it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

WELCOME = (
    "Welcome to miStudio.\n\n"
    "This home is empty. miStudio can build an offline sample in about a minute: a small English corpus "
    "(the docstrings of Python's standard library) and a tiny GPT-2 trained on it here, on your machine. "
    "No network needed."
)


class WelcomeModal(ModalScreen[str | None]):
    """Returns 'pipeline', 'sample', or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Later", id="welcome.later")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static("miStudio", classes="dialog-title")
            yield Static(WELCOME, classes="dialog-body")
            yield OptionList(
                Option(
                    "Build the sample and run the whole pipeline (tokenize → activations → SAE → features)",
                    id="pipeline",
                ),
                Option("Build the sample only (dataset + model)", id="sample"),
                Option("Not now (bring my own data)", id="later"),
                id="welcome-options",
            )

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        choice = event.option.id
        self.dismiss(None if choice == "later" else choice)
