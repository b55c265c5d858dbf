"""Auto-labeling from the Features screen: the settings form and the list of past labeling runs."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from mistudio_tui.db.models import FeatureSet, LabelingJob
from mistudio_tui.db.states import RunState
from mistudio_tui.services.labeling import endpoint_problem
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.modals.form import Field, FormModal

WHICH = [
    ("alive features", "alive"),
    ("all features", "all"),
    ("features without a semantic label", "unlabeled"),
    ("the current filter", "filter"),
    ("the selection below", "selection"),
    ("bookmarked features", "bookmarked"),
]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def labeling_form(fset: FeatureSet, selection: str = "") -> FormModal:
    """The labeling settings, prefilled from the last run on this feature set (never an API key)."""
    from mistudio_tui.labeling.prompts import builtin_templates

    last = LabelingJob.select().where(LabelingJob.feature_set == fset.id).order_by(LabelingJob.id.desc()).first()
    prior: dict[str, Any] = dict(last.settings) if last is not None else {}
    templates = sorted(name for name, t in builtin_templates().items() if getattr(t, "kind", "explain") == "explain")
    return FormModal(
        f"Label features of {fset.name}",
        [
            Field(
                "endpoint",
                "Endpoint (base URL)",
                default=prior.get("base_url", "http://localhost:8000/v1"),
                required=True,
                validate=endpoint_problem,
            ),
            Field("model", "Model", default=prior.get("model", ""), required=True, placeholder="e.g. gpt-4o-mini"),
            Field(
                "api_key_env",
                "API key environment variable",
                default=prior.get("api_key_env", "OPENAI_API_KEY"),
                help="the name of the variable holding the key; the key itself is never stored",
            ),
            Field("which", "Features", kind="choice", choices=WHICH, default="alive", required=True),
            Field("selection", "Selection", default=selection, placeholder="1,2,10-20"),
            Field("limit", "At most this many features (densest first)", kind="int", validate=_positive),
            Field(
                "examples_per_feature",
                "Examples per feature",
                kind="int",
                default=prior.get("examples_per_feature", 20),
                validate=_positive,
            ),
            Field(
                "template",
                "Prompt template",
                kind="choice",
                choices=[(name, name) for name in templates] or [("default", "default")],
                default=prior.get("template", "default"),
            ),
            Field(
                "concurrency",
                "Concurrent requests",
                kind="int",
                default=prior.get("concurrency", 4),
                validate=_positive,
            ),
            Field(
                "requests_per_minute",
                "Requests per minute (empty: no limit)",
                kind="float",
                default=prior.get("requests_per_minute"),
                validate=_positive,
            ),
            Field(
                "price_prompt_per_million",
                "Price per million input tokens",
                kind="float",
                default=prior.get("price_prompt_per_million"),
                validate=_not_negative,
            ),
            Field(
                "price_completion_per_million",
                "Price per million output tokens",
                kind="float",
                default=prior.get("price_completion_per_million"),
                validate=_not_negative,
            ),
            Field("score", "Score each label (detection)", kind="bool", default=prior.get("score", False)),
        ],
        submit_label="Start labeling",
        check=lambda v: (
            "Selection: list feature indices such as 1,2,10-20"
            if v["which"] == "selection" and not v["selection"]
            else None
        ),
    )


def run_status(run: LabelingJob) -> str:
    """The run's state: its job's status when it has one."""
    if run.job is not None and run.job.status != "completed":
        return run.job.status
    return run.status


class LabelingRunsModal(ModalScreen[int | None]):
    """Past labeling runs of a feature set; r resumes the highlighted one (returns its id)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="labeling_runs.close"),
        Binding("r", "resume", "Resume", id="labeling_runs.resume"),
    ]

    def __init__(self, fset: FeatureSet) -> None:
        super().__init__()
        self.fset = fset

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog labeling-runs"):
            yield Static(f"Labeling runs of {self.fset.name}", classes="dialog-title", markup=False)
            yield DataTable(id="labeling-runs", cursor_type="row")
            yield Static("r: resume a stopped run (skips features it labeled) · esc: close", classes="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Run", "Model", "Status", "Done", "Failed", "Total", "Tokens", "Cost")
        runs = LabelingJob.select().where(LabelingJob.feature_set == self.fset.id).order_by(LabelingJob.id.desc())
        for run in runs:
            table.add_row(
                str(run.id),
                run.model,
                run_status(run),
                f"{run.features_done:,}",
                f"{run.features_failed:,}",
                f"{run.features_total:,}",
                fmt.count(run.prompt_tokens + run.completion_tokens),
                "" if run.cost is None else f"${run.cost:.4f}",
                key=str(run.id),
            )
        table.focus()

    def action_resume(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        run = LabelingJob.get_by_id(int(str(key.value)))
        if run_status(run) in RunState.ACTIVE:
            self.notify(f"labeling run {run.id} is {run_status(run)}", severity="warning")
            return
        self.dismiss(run.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
