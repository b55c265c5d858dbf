"""Sweeps: the list of sweeps, the selected sweep's trials, and its L0–fidelity scatter with the Pareto front."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from mistudio_tui.db.models import Sweep
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.sweep_planner import METHODS, OBJECTIVES, shown_params
from mistudio_tui.services import sweeps as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import open_job_form, start_spec, training_form_choices
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.record_table import RecordTable

AXES = {"explained_variance": ("explained variance", "pareto_ev"), "ce_loss_recovered": ("CE recovered", "pareto_ce")}
LIVE_REFRESH_S = 2.0


class ParetoPlot(PlotextPlot):
    """Trials as points (x = L0, y = fidelity); the Pareto-front points highlighted and joined in L0 order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points: list[tuple[float, float]] = []
        self.front: list[tuple[float, float]] = []
        self.y_label = "explained variance"

    def set_points(self, points: list[tuple[float, float]], front: list[tuple[float, float]], y_label: str) -> None:
        self.points, self.front, self.y_label = points, sorted(front), y_label
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"L0 vs {self.y_label}")
        plt.xlabel("L0")
        if not self.points:
            plt.text("no finished trials yet", x=0.5, y=0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        else:
            others = [p for p in self.points if p not in self.front]
            if others:
                plt.scatter([x for x, _ in others], [y for _, y in others], marker="•", color="gray")
            if self.front:
                xs, ys = [x for x, _ in self.front], [y for _, y in self.front]
                if len(self.front) > 1:
                    plt.plot(xs, ys, marker="braille", color="green")
                plt.scatter(xs, ys, marker="◆", color="green")
        self.refresh()


class SweepsScreen(StudioScreen):
    """Sweeps and their trials; n starts one, c cancels, r resumes, a switches the fidelity axis, esc goes back."""

    TITLE_TEXT = "Sweeps"
    AUTO_FOCUS = "#sweeps-table"
    BINDINGS = [
        Binding("escape", "back", "Back", id="sweeps.back"),
        Binding("n", "new_sweep", "New sweep", id="sweeps.new"),
        Binding("c", "cancel_sweep", "Cancel", id="sweeps.cancel"),
        Binding("r", "resume_sweep", "Resume", id="sweeps.resume"),
        Binding("a", "next_axis", "EV/CE axis", id="sweeps.axis"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.axis = "explained_variance"

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Sweeps", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 18),
                        ("method", "Method", 6),
                        ("status", "State", 10),
                        ("done", "Done", 5),
                        ("best", "Best", 6),
                        ("space", "Space", 24),
                    ],
                    id="sweeps-table",
                    classes="short",
                )
                yield Static("Trials", classes="section-title", id="trials-title")
                yield RecordTable(
                    [
                        ("front", "◆", 1),
                        ("name", "Training", 18),
                        ("status", "State", 10),
                        ("params", "Params", 14),
                        ("l0", "L0", 6),
                        ("ev", "EV", 6),
                        ("ce", "CE rec", 6),
                        ("score", "Score", 7),
                    ],
                    id="trials-table",
                )
            with Vertical(classes="detail-pane"):
                yield ParetoPlot(id="pareto-plot")
                yield Static("", id="sweep-detail", classes="detail")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(LIVE_REFRESH_S, self._refresh_live)

    @property
    def sweeps_table(self) -> RecordTable:
        return self.query_one("#sweeps-table", RecordTable)

    @property
    def sweep(self) -> Sweep | None:
        sid = self.sweeps_table.selected_id
        return Sweep.get_or_none(Sweep.id == sid) if sid is not None else None

    def reload(self) -> None:
        records = []
        for sweep in Sweep.select().order_by(Sweep.id.desc()):
            rows = svc.trial_rows(sweep)
            best = svc.best_trial(rows)
            settings = sweep.base_config or {}
            done = sum(r["status"] in RunState.FINISHED for r in rows)
            records.append(
                (
                    sweep.id,
                    (
                        sweep.name,
                        sweep.method,
                        fmt.status_text(sweep.status),
                        f"{done}/{settings.get('trials', '?')}",
                        fmt.num(best["score"]) if best else "-",
                        (sweep.space or {}).get("text", ""),
                    ),
                )
            )
        self.sweeps_table.set_records(records)
        self.show_selected()

    def _refresh_live(self) -> None:
        if Sweep.select().where(Sweep.status.in_(RunState.ACTIVE)).exists():
            self.reload()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "sweeps-table":
            self.show_selected()

    def show_selected(self) -> None:
        sweep = self.sweep
        trials_table = self.query_one("#trials-table", RecordTable)
        detail = self.query_one("#sweep-detail", Static)
        plot = self.query_one("#pareto-plot", ParetoPlot)
        label, front_key = AXES[self.axis]
        if sweep is None:
            trials_table.set_records([])
            plot.set_points([], [], label)
            detail.update("No sweeps yet.\n\nn: start a sweep over hyperparameters of an activation set")
            return
        rows = svc.trial_rows(sweep)
        trials_table.set_records([(r["training_id"], self._trial_cells(r, front_key)) for r in rows])
        self.query_one("#trials-title", Static).update(f"Trials of {sweep.name}")
        finished = [r for r in rows if r["l0"] is not None and r[self.axis] is not None and r["score"] is not None]
        plot.set_points(
            [(r["l0"], r[self.axis]) for r in finished],
            [(r["l0"], r[self.axis]) for r in finished if r[front_key]],
            label,
        )
        settings = sweep.base_config or {}
        best = svc.best_trial(rows)
        lines = [
            f"[b]{sweep.name}[/b]  {sweep.method} · {fmt.status_text(sweep.status)} · objective "
            f"{settings.get('objective', 'ev')} · {settings.get('parallel', 1)} at once",
            f"space: {(sweep.space or {}).get('text', '')}",
            f"best: {best['name']} ({fmt.num(best['score'])})" if best else "best: -",
            "[dim]◆ on the Pareto front · a: EV/CE axis · n new · c cancel · r resume · esc back[/dim]",
        ]
        detail.update("\n".join(lines))

    @staticmethod
    def _trial_cells(row: dict[str, Any], front_key: str) -> tuple[Any, ...]:
        params = " ".join(
            f"{k}={fmt.num(v) if isinstance(v, float) else v}" for k, v in shown_params(row["params"]).items()
        )
        return (
            "◆" if row[front_key] else " ",
            row["name"],
            fmt.status_text(row["status"]),
            params,
            fmt.num(row["l0"]),
            fmt.num(row["explained_variance"]),
            fmt.num(row["ce_loss_recovered"]),
            fmt.num(row["score"]),
        )

    # --- actions ---------------------------------------------------------------------------------
    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_next_axis(self) -> None:
        keys = list(AXES)
        self.axis = keys[(keys.index(self.axis) + 1) % len(keys)]
        self.show_selected()

    def action_cancel_sweep(self) -> None:
        sweep = self.sweep
        if sweep is None:
            return
        try:
            svc.cancel_sweep(self.studio, sweep.id)
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"cancelling {sweep.name}: its running trials checkpoint first")

    def action_resume_sweep(self) -> None:
        sweep = self.sweep
        if sweep is not None:
            start_spec(self, lambda: svc.resume_sweep(sweep.id))

    def action_new_sweep(self) -> None:
        choices = training_form_choices(self)
        if choices is None:
            return
        sets, templates = choices
        fields = [
            Field("activations", "Activation set", "choice", sets[0][1], choices=sets, required=True),
            Field(
                "space",
                "Search space",
                required=True,
                placeholder="k=8,16,32 lr=1e-4..1e-3:log",
                help="name=a,b,c lists values; name=low..high[:log][:points] is a range (grid: 3 points unless :N)",
                validate=_space_problem,
            ),
            Field("method", "Method", "choice", "grid", choices=[(m, m) for m in METHODS], required=True),
            Field("trials", "Trials", "int", help="random/tpe: how many; grid: at most this many"),
            Field(
                "objective",
                "Objective",
                "choice",
                "ev",
                choices=[(f"{k}: {v}", k) for k, v in OBJECTIVES.items()],
                required=True,
            ),
            Field("template", "Template (fixed settings)", "choice", None, choices=templates),
            Field("total_tokens", "Tokens per trial", "int", placeholder="template's or 2M"),
            Field("parallel", "Trials at once", "int", 1),
            Field("name", "Name", placeholder="automatic"),
        ]

        def build(values: dict[str, Any]) -> Any:  # a refused setting keeps the form open
            fixed = {"total_tokens": values["total_tokens"]} if values["total_tokens"] else {}
            request = svc.SweepRequest(
                activations=values["activations"],
                space=values["space"],
                method=values["method"],
                trials=values["trials"] or None,
                objective=values["objective"],
                parallel=values["parallel"] or 1,
                template=values["template"],
                name=values["name"],
                fixed=fixed,
            )
            return svc.new_sweep(request)

        open_job_form(self, FormModal("New sweep", fields, submit_label="Start sweep", build=build))


def _space_problem(text: str) -> str | None:
    try:
        svc.parse_space(text)
    except ValueError as exc:
        return str(exc).removeprefix("space: ")
    return None
