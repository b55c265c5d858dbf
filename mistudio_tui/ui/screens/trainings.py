"""Trainings: the runs list (sort, filter, groups, mini curves, marks) with the selected run's curve beside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.events import Key, Resize
from textual.widgets import DataTable, Input, Static

from mistudio_tui.db.models import Job, Training
from mistudio_tui.db.rows import tuples
from mistudio_tui.db.states import RunState
from mistudio_tui.services import features as feature_svc
from mistudio_tui.services import run_list
from mistudio_tui.services import trainings as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, open_job_form, start_spec, submit_spec, training_form_choices
from mistudio_tui.ui.live_redraw import LiveRedraw, update_if_changed
from mistudio_tui.ui.messages import JobMetrics
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.plots import CurvePlot
from mistudio_tui.ui.widgets.record_table import RecordTable
from mistudio_tui.ui.widgets.runs import POLL_S, MetricKeys, draw_metric_curve, guidance_lines, log_tail, pause_training
from mistudio_tui.ui.widgets.sparkline import SparklineCache

CURVE_METRICS = ("loss", "mse", "l0", "explained_variance", "dead_fraction", "lr", "tokens_per_s")
NARROW_BELOW = 80
Column = tuple[str, str, int]
WIDE_COLUMNS: list[Column] = [
    ("mark", " ", 1),
    ("name", "Name", 22),
    ("state", "State", 9),
    ("curve", "Loss curve", 12),
    ("loss", "Loss", 7),
    ("l0", "L0", 6),
    ("ev", "EV", 6),
    ("steps", "Steps", 6),
    ("tps", "tok/s", 6),
    ("arch", "Arch", 9),
    ("width", "Width", 6),
    ("k", "k/L1", 6),
    ("device", "Device", 6),
]
NARROW_COLUMNS: list[Column] = [("mark", " ", 1), ("name", "Name", 13), ("state", "State", 9), ("curve", "Loss", 8)]
NAME_MIN, NAME_MAX = 16, 40  # names are cut in the middle to the name column's width
CELL_PADDING = 2  # DataTable pads each cell by one column on each side
SORTABLE = [key for key in run_list.SORT_KEYS if key != "created"]


class RunTable(RecordTable):
    """A RecordTable whose column set can be swapped (wide or narrow) and whose headers show the sort."""

    def __init__(self, columns: Sequence[Column], **kwargs: Any) -> None:
        super().__init__(columns, **kwargs)
        self.columns_spec = list(columns)

    def on_resize(self, event: Resize) -> None:
        # (RecordTable.on_resize runs too: Textual calls the handler of each class along the MRO)
        fit = getattr(self.screen, "fit_to_width", None)
        if fit is not None:
            self.call_after_refresh(fit)

    def set_records(self, records: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """As RecordTable's, but only cells whose value changed are touched (each update repaints)."""
        if [str(rid) for rid, _ in records] != [str(row.value) for row in self.rows]:
            super().set_records(records)
            return
        for rid, row_cells in records:
            self.update_record(rid, row_cells)

    def update_record(self, rid: int, row_cells: Sequence[Any]) -> None:
        """Update the changed cells of one row."""
        for column, value in zip(self._column_keys, row_cells, strict=True):
            if self.get_cell(str(rid), column) != value:
                self.update_cell(str(rid), column, value)

    def set_columns(self, columns: Sequence[Column], sort_key: str, descending: bool) -> None:
        """Replace the columns (rows are dropped; the next `set_records` refills them, the cursor on the same run)."""
        if self.row_count:
            self.kept_id = self.selected_id
        self.clear(columns=True)
        self.columns_spec = list(columns)
        self._column_keys = [key for key, _, _ in columns]
        for key, label, width in columns:
            arrow = ("▼" if descending else "▲") if key == sort_key else ""
            self.add_column(label + arrow, key=key, width=width + (1 if arrow else 0))


def fit_columns(columns: Sequence[Column], width: int) -> list[Column]:
    """The columns that fit `width` whole, in order (the ones left out show in the detail pane): a number is shown
    in full or not at all; the name column gives up room down to NAME_MIN first and takes what is left over."""
    name_min = min(NAME_MIN, next(w for key, _, w in columns if key == "name"))
    kept: list[Column] = []
    used = 0
    for key, label, w in columns:
        w = name_min if key == "name" else w
        if kept and width and used + w + CELL_PADDING > width:
            break
        kept.append((key, label, w))
        used += w + CELL_PADDING
    spare = max(0, width - used) if width else 0
    return [(key, label, min(NAME_MAX, w + spare)) if key == "name" else (key, label, w) for key, label, w in kept]


def cells(
    row: run_list.RunRow, columns: Sequence[Column], marked: bool, sparklines: SparklineCache, narrow: bool = False
) -> tuple[Any, ...]:
    """The cells of one run for the given columns, names cut in the middle and numbers fitted to their width."""
    t = row.training
    width = {key: w for key, _, w in columns}
    values: dict[str, Any] = {
        "mark": "●" if marked else " ",
        "state": fmt.status_text(t.status),
        "arch": svc.shown_architecture(t.architecture),
        "width": fmt.count(t.d_sae),
        "k": fmt.num(run_list.SORT_KEYS["k"](t)),
        "steps": fmt.count(t.steps),
        "loss": t.loss,
        "l0": t.l0,
        "ev": t.explained_variance,
        "tps": fmt.count(t.tokens_per_s),
        "device": t.device or "-",
    }
    for key in ("loss", "l0", "ev"):
        values[key] = fmt.num_fit(values[key], width.get(key, 7))
    values["name"] = group_label(t, narrow, width.get("name", NAME_MAX))
    if "curve" in width:
        values["curve"] = Text(sparklines.get(t.id, t.steps, width["curve"]), style="cyan")
    return tuple(values[key] for key, _, _ in columns)


def group_label(training: Training, narrow: bool, width: int = NAME_MAX) -> Text:
    """The name cell: `group/name` (wide) or a coloured bar before the name (narrow) for grouped runs, cut in the
    middle to `width` (the end is what tells `topk-L0-4k-a3f` from `topk-L0-4k-b71`)."""
    if not training.group_name:
        return Text(fmt.middle(training.name, width))
    if narrow:
        return Text.assemble(("▍", "magenta"), fmt.middle(training.name, width - 1))
    group = training.group_name + "/"
    if len(group) + len(training.name) > width:  # the run's own name first, then what is left of its group's
        name = fmt.middle(training.name, max(width - 4, width * 2 // 3))
        group = fmt.middle(group, width - len(name)) if width > len(name) else ""
        return Text.assemble((group, "magenta"), name)
    return Text.assemble((group, "magenta"), training.name)


class TrainingsScreen(MetricKeys, StudioScreen):
    """Runs on the left; the selected run's curve, numbers and log on the right; enter opens the run."""

    TITLE_TEXT = "Trainings"
    AUTO_FOCUS = "#trainings-table"
    METRICS = CURVE_METRICS
    BINDINGS = [
        Binding("n", "new_training", "New", id="trainings.new"),
        Binding("enter", "open_detail", "Open", id="trainings.open", show=False),
        Binding("space", "toggle_mark", "Mark", id="trainings.mark", show=False),
        Binding("v", "compare", "Compare", id="trainings.compare"),
        Binding("slash", "filter", "Filter", id="trainings.filter"),
        Binding("s", "next_sort", "Sort", id="trainings.sort", show=False),
        Binding("S", "reverse_sort", "Reverse sort", id="trainings.sort_reverse", show=False),
        Binding("p", "pause", "Pause", id="trainings.pause"),
        Binding("c", "pause", "Pause", id="trainings.pause_c", show=False),
        Binding("r", "resume", "Resume", id="trainings.resume"),
        Binding("f", "extract_features", "Features", id="trainings.features"),
        Binding("m", "next_metric", "Metric", id="trainings.metric", show=False),
        Binding("l", "toggle_log", "Log y", id="trainings.log", show=False),
        Binding("t", "templates", "Templates", id="trainings.templates", show=False),
        Binding("w", "sweeps", "Sweeps", id="trainings.sweeps", show=False),
        Binding("x", "delete", "Delete", id="trainings.delete"),
        # always in the footer: in a text field plain keys type, esc gives them back to the screen
        Binding("escape", "leave_field", "Leave field", id="trainings.leave_field"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.metric = "loss"
        self.log_y: bool | None = None
        self.sort_key = "created"
        self.descending = False
        self.filter_text = ""
        self.marked: set[int] = set()
        self.sparklines = SparklineCache()
        self.shown_ids: list[int] = []
        self._narrow: bool | None = None
        self._polled: dict[int, int] = {}
        self._select_new: int | None = None  # a run just started here: the cursor goes to it when it is listed
        self._drawn_steps: dict[int, int] = {}  # steps each shown run had when its row was last drawn
        self.live = LiveRedraw(self, self._redraw_live_jobs)

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.follow_database)

    def follow_database(self) -> None:
        """Refresh runs whose steps moved since they were drawn; reload when a run starts or stops anywhere."""
        if self.live.typing() or not self.is_current:
            return
        query = Training.select(Training.id, Training.steps, Training.job).where(Training.status.in_(RunState.ACTIVE))
        rows = list(tuples(query))
        active = {rid: steps for rid, steps, _ in rows}
        previous, self._polled = self._polled, active
        if set(active) != set(previous):
            self.reload()
            return
        fed = self.live.fed_jobs(POLL_S)  # `live` draws those
        moved = [
            rid
            for rid, steps, job in rows
            if self._drawn_steps.get(rid) != steps and rid in self.shown_ids and job not in fed
        ]
        if moved:
            self._refresh_rows(list(Training.select().where(Training.id.in_(moved))))

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Training runs", classes="section-title", id="runs-title")
                box = Input(placeholder="filter: state:running tag:x group:g model:m dataset:d", id="run-filter")
                box.display = False
                yield box
                yield RunTable(WIDE_COLUMNS, id="trainings-table")
            with Vertical(classes="detail-pane"):
                yield CurvePlot("loss", id="curve")
                yield Static("", id="training-detail", classes="detail")
                yield Static("", id="training-log", classes="log-tail")

    @property
    def table(self) -> RunTable:
        return self.query_one("#trainings-table", RunTable)

    def on_key(self, event: Key) -> None:
        self.live.key_pressed()

    def fit_to_width(self) -> None:
        """Reload when the table's width calls for another column set."""
        if self._wanted_columns() != self.table.columns_spec:
            self.reload()

    def _wanted_columns(self) -> list[Column]:
        narrow = self.size.width < NARROW_BELOW if self.size.width else False
        self._narrow = narrow
        columns = NARROW_COLUMNS if narrow else WIDE_COLUMNS
        arrow = 1 if any(key == self.sort_key for key, _, _ in columns) else 0  # the sorted column's ▲ takes one
        return fit_columns(columns, max(0, self.table.scrollable_content_region.width - arrow))

    def _ensure_columns(self) -> list[Column]:
        wanted = self._wanted_columns()
        if wanted != self.table.columns_spec:
            self.table.set_columns(wanted, self.sort_key, self.descending)
        return self.table.columns_spec

    def visible_rows(self) -> list[run_list.RunRow]:
        """The runs the list shows: filtered, sorted, grouped (an invalid filter shows everything)."""
        rows = run_list.load_rows()
        # what the database poll compares with: the runs active now are drawn, only a change needs a reload
        self._polled = {r.training.id: r.training.steps for r in rows if r.training.status in RunState.ACTIVE}
        try:
            run_filter = run_list.parse_filter(self.filter_text)
        except ValueError:
            run_filter = run_list.RunFilter()
        rows = [r for r in rows if run_list.matches(r, run_filter)]
        return run_list.sort_rows(rows, self.sort_key, self.descending)

    def reload(self) -> None:
        columns = self._ensure_columns()
        rows = self.visible_rows()
        self.shown_ids = [r.training.id for r in rows]
        self._drawn_steps = {r.training.id: r.training.steps for r in rows}
        self.marked &= {rid for (rid,) in tuples(Training.select(Training.id))}
        self.table.set_records(
            [
                (r.training.id, cells(r, columns, r.training.id in self.marked, self.sparklines, bool(self._narrow)))
                for r in rows
            ]
        )
        title = "Training runs"
        if self.filter_text:
            title += f" · filter {self.filter_text!r}"
        if self.marked:
            title += f" · {len(self.marked)} marked"
        update_if_changed(self.query_one("#runs-title", Static), Text(title))
        if self._select_new in self.shown_ids:
            self.table.move_cursor(row=self.shown_ids.index(self._select_new))
            self._select_new = None
        self.show_selected()

    @property
    def training(self) -> Training | None:
        rid = self.table.selected_id
        return Training.get_or_none(Training.id == rid) if rid is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_detail()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        key = "loss" if key == "curve" else key
        if key not in run_list.SORT_KEYS:
            return
        self.descending = not self.descending if key == self.sort_key else False
        self.sort_key = key
        self._apply_sort()

    def show_selected(self) -> None:
        training = self.training
        detail = self.query_one("#training-detail", Static)
        plot = self.query_one("#curve", CurvePlot)
        log = self.query_one("#training-log", Static)
        if training is None:
            empty = "No runs match the filter." if self.filter_text else "No trainings yet."
            update_if_changed(detail, f"{empty}\n\nn: train an SAE on an activation set (Models screen, e)")
            plot.set_series([], title=self.metric)
            update_if_changed(log, "")
            return
        self.draw_curve(training)
        sae = (training.config or {}).get("sae", {})
        train = (training.config or {}).get("train", {})
        frac = training.tokens / training.total_tokens if training.total_tokens else None
        lines = [
            f"[b]{escape(training.name)}[/b]  {svc.shown_architecture(training.architecture)} "
            f"{sae.get('d_in', '?')}→{training.d_sae}"
            + (f" k={sae['k']}" if sae.get("k") else "")
            + f"  hook {escape(training.hook_name or '-')}"
            + (f"  group {escape(training.group_name)}" if training.group_name else ""),
            f"tokens {fmt.count(training.tokens)}/{fmt.count(training.total_tokens)} {fmt.bar(frac, 10)}  "
            f"steps {training.steps:,}  {fmt.count(training.tokens_per_s)} tok/s  on {training.device or '-'}",
            f"loss {fmt.num(training.loss)} · L0 {fmt.num(training.l0)} · EV {fmt.num(training.explained_variance)}"
            f" · dead {fmt.num(training.dead_fraction)}",
            f"lr {train.get('lr') or 'auto'} · batch {train.get('batch_size')} · {train.get('dtype', 'fp32')}",
        ]
        if training.evaluation:
            ev = training.evaluation
            parts = [f"{k} {fmt.num(v)}" for k, v in ev.items() if isinstance(v, (int, float))][:6]
            lines.append("eval: " + " · ".join(parts))
        tail = log_tail(training, 6)
        lines.extend(guidance_lines(training, tail))
        # fixed height: no relayout on every cursor move
        update_if_changed(detail, "\n".join(lines), layout=False)
        update_if_changed(log, Text("\n".join(tail)), layout=False)

    def draw_curve(self, training: Training) -> None:
        draw_metric_curve(self.query_one("#curve", CurvePlot), training, self.metric, self.log_y)

    @on(JobMetrics)
    def metrics_arrived(self, message: JobMetrics) -> None:
        self.live.request(message.job_id)  # coalesced: input first, at most one redraw a second, the last batch drawn

    def _redraw_live_jobs(self) -> None:
        jobs = self.live.take_jobs()
        # a group job (several SAEs from one forward pass) feeds several runs
        live = [t for t in Training.select().where(Training.job.in_(jobs)) if t.id in self.shown_ids]
        if live:
            self._refresh_rows(live)

    def _refresh_rows(self, live: list[Training]) -> None:
        self.live.drawn()
        columns = self.table.columns_spec
        for row in run_list.load_rows(live):
            rid = row.training.id
            self._drawn_steps[rid] = row.training.steps
            self.table.update_record(rid, cells(row, columns, rid in self.marked, self.sparklines, bool(self._narrow)))
        if self.table.selected_id in {t.id for t in live}:
            self.show_selected()

    # --- list: filter, sort, marks -----------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#run-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#run-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        try:
            run_list.parse_filter(event.value)
        except ValueError as exc:
            self.query_one("#runs-title", Static).update(Text(str(exc), style="red"))
            return
        self.filter_text = event.value.strip()
        self.reload()

    @on(Input.Submitted, "#run-filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        self._leave_filter()

    def action_leave_field(self) -> None:
        self._leave_filter()

    def _leave_filter(self) -> None:
        box = self.query_one("#run-filter", Input)
        box.display = bool(box.value.strip())
        self.table.focus()

    def action_next_sort(self) -> None:
        keys = SORTABLE
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)] if self.sort_key in keys else keys[0]
        self.descending = False
        self._apply_sort()

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self._apply_sort()

    def _apply_sort(self) -> None:
        self.table.set_columns(self.table.columns_spec, self.sort_key, self.descending)
        self.reload()
        self.notify(f"sorted by {self.sort_key}{' (descending)' if self.descending else ''}", timeout=2)

    def action_toggle_mark(self) -> None:
        rid = self.table.selected_id
        if rid is None:
            return
        self.marked ^= {rid}
        row = self.table.cursor_row
        self.reload()
        if row + 1 < self.table.row_count:
            self.table.move_cursor(row=row + 1)

    def action_compare(self) -> None:
        ids = [i for i in self.shown_ids if i in self.marked] or sorted(self.marked)
        if len(ids) < 2:
            self.notify("Mark two or more runs with space, then press v", severity="warning")
            return
        from mistudio_tui.ui.screens.training_compare import TrainingCompareScreen

        self.app.push_screen(TrainingCompareScreen(ids))

    def action_open_detail(self) -> None:
        training = self.training
        if training is None:
            return
        from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen

        self.app.push_screen(TrainingDetailScreen(training.id))

    # --- actions ---------------------------------------------------------------------------------
    def redraw_metric(self) -> None:
        self.show_selected()

    def action_templates(self) -> None:
        def picked(config: dict[str, Any] | None) -> None:
            if config:
                self.action_new_training(config)

        from mistudio_tui.ui.modals.templates import TemplatePicker

        self.app.push_screen(TemplatePicker(training=self.training), picked)

    def action_sweeps(self) -> None:
        from mistudio_tui.ui.screens.sweeps import SweepsScreen

        self.app.push_screen(SweepsScreen())

    def action_new_training(self, template_config: dict[str, Any] | None = None) -> None:
        """The new-run form; a picked template's config fills its defaults and stays the run's base config."""
        base = template_config or {}
        sae, train = base.get("sae", {}), base.get("train", {})
        expansion = sae["d_sae"] // sae["d_in"] if sae.get("d_sae") and sae.get("d_in") else sae.get("expansion", 8)
        choices = training_form_choices(self)
        if choices is None:
            return
        sets, templates = choices
        fields = [
            Field(
                "activations",
                "Activation set",
                kind="choice",
                choices=sets,
                required=True,
                default=sets[-1][1],
            ),
            Field(
                "architecture",
                "Architecture",
                kind="choice",
                required=True,
                default=svc.architecture_id(sae.get("architecture", "topk")),  # a template may hold the shown name
                choices=[
                    ("TopK", "topk"),
                    ("BatchTopK", "batchtopk"),
                    ("Matryoshka BatchTopK", "matryoshka"),
                    ("ReLU + L1", "standard"),
                    ("JumpReLU", "jumprelu"),
                ],
            ),
            Field("k", "k (TopK / BatchTopK / Matryoshka)", kind="int", default=sae.get("k", 32)),
            Field("l1_coefficient", "L1 coefficient (ReLU)", kind="float", default=sae.get("l1_coefficient")),
            Field("expansion", "Expansion factor", kind="int", default=expansion),
            Field("transcode", "Transcoder IN_HOOK:OUT_HOOK (blank: an SAE)", placeholder="hooks of the set"),
            Field("skip", "Skip connection (transcoder)", kind="bool", default=False),
            Field("total_tokens", "Tokens", kind="int", default=train.get("total_tokens", "2M")),
            Field("batch_size", "Batch size", kind="int", default=train.get("batch_size", 4096)),
            Field("lr", "Learning rate (blank: automatic)", kind="float", default=train.get("lr")),
            *advanced_fields(sae, train),
            Field("device", "Device", default=train.get("device", "auto")),
            Field("name", "Name (blank: automatic, e.g. topk-L0-4k-a3f)"),
            Field("tags", "Tags (comma-separated, optional)"),
        ]
        if not base:
            fields.insert(-2, Field("template", "Template (optional)", kind="choice", choices=templates))

        def build(values: dict[str, Any]) -> Any:
            options = dict(values)
            return svc.new_training(
                self.studio,
                options.pop("activations"),
                name=options.pop("name"),
                template=options.pop("template", None),
                tags=options.pop("tags") or "",
                template_config=template_config,
                **{**options, "device": options["device"] or "auto"},
            )

        form = FormModal("Train an SAE from a template" if base else "Train an SAE", fields, "Train", build=build)

        def done(values: dict[str, Any] | None) -> None:
            if values is not None and form.built is not None:
                job_id = submit_spec(self, form.built)
                if job_id is not None:
                    self._select_new = Job.get_by_id(job_id).resource_id

        self.app.push_screen(form, done)

    def action_pause(self) -> None:
        pause_training(self, self.training)

    def action_resume(self) -> None:
        training = self.training
        if training is None:
            return
        start_spec(self, lambda: svc.resume_training(training.id))

    def action_extract_features(self) -> None:
        training = self.training
        if training is None:
            return
        fields = [
            Field("n_tokens", "Tokens to scan", kind="int", default="100k"),
            Field("top_k", "Top examples per feature", kind="int", default=20),
        ]

        def build(values: dict[str, Any]) -> Any:
            return feature_svc.extract_features(
                self.studio, training.id, n_tokens=values["n_tokens"], top_k=values["top_k"]
            )

        open_job_form(self, FormModal(f"Extract features of {training.name}", fields, "Extract", build=build))

    def action_delete(self) -> None:
        if self.training is not None:
            confirm_delete(self, self.training)


def advanced_fields(sae: dict[str, Any], train: dict[str, Any]) -> list[Field]:
    """Seed, AuxK coefficient, dead-feature window and warmup, with the trainer's defaults filled in."""

    def value(section: dict[str, Any], key: str) -> Any:
        return section.get(key, svc.config_default(key))

    return [
        Field("seed", "Seed", kind="int", default=value(train, "seed")),
        Field(
            "aux_k_coefficient",
            "AuxK coefficient (TopK / BatchTopK; 0: off)",
            kind="float",
            default=f"{value(sae, 'aux_k_coefficient'):g}",
        ),
        Field(
            "dead_tokens_threshold",
            "Dead-feature window (tokens without firing)",
            kind="int",
            default=fmt.count(value(sae, "dead_tokens_threshold")).replace(".0", ""),
        ),
        Field(
            "lr_warmup_steps",
            "LR warmup steps (blank: 0 for signum, 1000 for Adam)",
            kind="int",
            default=value(train, "lr_warmup_steps"),
        ),
    ]
