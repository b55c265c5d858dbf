"""Steering: normal and steered generations of one prompt side by side, presets, export, and feature analysis.

The model work runs in the persistent inference worker (`mistudio_tui.inference.session`); thread workers stream
its answers back as messages and only the message handlers touch widgets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, TabPane
from textual.widgets.select import InvalidSelectValueError

from mistudio_tui.services import steering as svc
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.steering_plots import CooccurrenceHeatmap, DecoderMap

METHOD_OPTIONS = [("add decoder direction", "add"), ("clamp in SAE", "clamp")]
POSITION_OPTIONS = [("all positions", "all"), ("prompt only", "prompt"), ("generated only", "generated")]
UNIT_OPTIONS = [("× max act", "max"), ("absolute", "absolute")]  # strength units (SAELens steers by absolute)
INTRO = "strengths are multiples of each feature's max activation, or absolute coefficients; several make a sweep"
ANALYSIS_BUTTONS = {"an-ablate": "ablate", "an-cooccurrence": "cooccurrence", "an-map": "decoder_map"}
ANALYSIS_COMMANDS = [
    ("ablate", "Steering: ablate the features", "Zero the chosen features on the prompt and show the effect"),
    ("cooccurrence", "Steering: co-occurrence", "Which features fire together on the prompt and completions"),
    ("decoder_map", "Steering: decoder map", "Map the SAE's decoder directions in two dimensions"),
]
HEATMAP_PARTNERS = 7  # the heatmap shows the chosen features plus the first one's best co-firing partners
FIELD_LABELS = {"temperature": "temp", "top_p": "top-p", "max_tokens": "tokens", "seed": "seed"}
NUMBER_FIELDS = {
    "steer-temperature": ("temperature", float, 1.0),
    "steer-top-p": ("top_p", float, 1.0),
    "steer-max-tokens": ("max_tokens", int, 32),
    "steer-seed": ("seed", int, 0),
}


class SteeringScreen(StudioScreen):
    """Pick a training, features, strengths and sampling; run; compare; analyse."""

    TITLE_TEXT = "Steering"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", id="steering.run"),
        Binding("ctrl+g", "stop", "Stop", id="steering.stop"),
        Binding("ctrl+s", "save_preset", "Save preset", id="steering.save_preset"),
        Binding("ctrl+o", "export", "Export", id="steering.export"),
        Binding("ctrl+t", "toggle_tab", "Compare/Analysis", id="steering.tab"),
        # the fields take every plain key: esc leaves them so 1…6, j, ? and q work again
        Binding("escape", "leave_field", "Leave field", id="steering.leave_field"),
    ]

    class Piece(Message):
        """A streamed token of one variant."""

        def __init__(self, run: int, variant: str, token: str) -> None:
            super().__init__()
            self.run, self.variant, self.token = run, variant, token

    class Finished(Message):
        """A run ended with `result`, or with `error`."""

        def __init__(self, run: int, result: dict[str, Any] | None, error: str = "") -> None:
            super().__init__()
            self.run, self.result, self.error = run, result, error

    class Analysed(Message):
        """An analysis op (`kind`) finished with `result`, or with `error`."""

        def __init__(self, kind: str, result: dict[str, Any] | None, error: str = "") -> None:
            super().__init__()
            self.kind, self.result, self.error = kind, result, error

    def __init__(self) -> None:
        super().__init__()
        self._session: Any = None
        self._stream: Any = None
        self._run = 0
        self.texts: dict[str, str] = {}
        self.request: svc.SteeringRequest | None = None
        self.result: dict[str, Any] | None = None
        self._pending_feature: tuple[int, int] | None = None
        self._pending_training: int | None = None

    # --- layout ----------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="steer-controls"):
            with Horizontal(classes="steer-row"):
                yield Select([], prompt="training (SAE)", id="steer-training", compact=True)
                yield Select([], prompt="load a preset", id="steer-preset", compact=True)
            with Horizontal(classes="steer-row"):
                yield Input(placeholder="features: 3, 17 or words", id="steer-features", compact=True)
                yield Input(placeholder="strengths: 4 or 0, 2, 8", id="steer-strengths", compact=True)
                yield Select(UNIT_OPTIONS, value="max", allow_blank=False, id="steer-units", compact=True)
                yield Select(METHOD_OPTIONS, value="add", allow_blank=False, id="steer-method", compact=True)
                yield Select(POSITION_OPTIONS, value="all", allow_blank=False, id="steer-positions", compact=True)
            with Horizontal(classes="steer-row"):
                for wid, (name, _, default) in NUMBER_FIELDS.items():
                    with Horizontal(classes="steer-field"):
                        yield Label(FIELD_LABELS[name], classes="steer-label")
                        yield Input(str(default), placeholder=name.replace("_", " "), id=wid, compact=True)
            yield Input(placeholder="prompt: type, Enter (or ctrl+r) runs", id="steer-prompt", compact=True)
            yield Static(INTRO, id="steer-status", classes="hint", markup=False)
        with TabbedContent(id="steer-tabs"):
            with TabPane("Compare", id="tab-compare"), Horizontal(id="steer-panes"):
                with VerticalScroll(classes="steer-pane"):
                    yield Static("normal", classes="section-title")
                    yield Static("", id="steer-normal", markup=False)
                with VerticalScroll(classes="steer-pane"):
                    yield Static("steered", classes="section-title")
                    yield Static("", id="steer-steered", markup=False)
            with TabPane("Analysis", id="tab-analysis"):
                with Horizontal(classes="steer-buttons"):
                    yield Button("Ablate", id="an-ablate", compact=True)
                    yield Button("Co-occurrence", id="an-cooccurrence", compact=True)
                    yield Button("Decoder map", id="an-map", compact=True)
                    yield Select(
                        [(f"colour: {c}", c) for c in svc.MAP_COLOURINGS],
                        value="density",
                        allow_blank=False,
                        compact=True,
                        id="an-map-colour",
                    )
                yield Static(
                    "Ablate zeroes the features on the prompt; co-occurrence scans the prompt and completions "
                    "(ctrl+p runs them by name, ctrl+t switches tabs).",
                    id="an-result",
                    classes="hint",
                    markup=False,
                )
                with Horizontal(id="an-plots"):
                    yield CooccurrenceHeatmap(id="an-heatmap")
                    yield DecoderMap(id="an-map-plot")

    # --- data ------------------------------------------------------------------------------------
    def reload(self) -> None:
        select = self.query_one("#steer-training", Select)
        current = select.value
        trainings = svc.steerable_trainings()
        options = [(f"{t.name} (#{t.id}, {t.d_sae or '?'} features)", t.id) for t in trainings]
        with select.prevent(Select.Changed):
            select.set_options(options)
            ids = [t.id for t in trainings]
            if current in ids:
                select.value = current
            elif ids:
                select.value = ids[0]
        if self._pending_training is not None:
            training_id, self._pending_training = self._pending_training, None
            self.follow_training(training_id)
        if self._pending_feature is not None:
            self.add_feature(*self._pending_feature)
        self.load_presets()

    def load_presets(self) -> None:
        select = self.query_one("#steer-preset", Select)
        presets = svc.presets_for(self.training_id)
        with select.prevent(Select.Changed):
            select.set_options([(p.name, p.id) for p in presets])

    @property
    def training_id(self) -> int | None:
        value = self.query_one("#steer-training", Select).value
        return value if isinstance(value, int) else None

    def follow_training(self, training_id: int) -> None:
        """Show SAE `training_id`, the one the Features screen browses as the user comes here from it."""
        if not self.is_mounted:
            self._pending_training = training_id
            return
        if training_id != self.training_id and self.select_training(training_id):
            self.set_status(f"SAE #{training_id}: the one the Features screen shows; {INTRO}")

    def select_training(self, training_id: int) -> bool:
        """Select training `training_id`, clearing features chosen for another SAE; False (said) when not steerable."""
        if training_id == self.training_id:
            return True
        select = self.query_one("#steer-training", Select)
        with select.prevent(Select.Changed):
            try:
                select.value = training_id
            except InvalidSelectValueError:  # the training is not steerable (unfinished, no model)
                self.set_status(f"training #{training_id} cannot be steered (unfinished or without a model)")
                return False
        self.query_one("#steer-features", Input).value = ""
        self.load_presets()
        return True

    def add_feature(self, training_id: int, index: int) -> None:
        """Select training `training_id` and add feature `index` (e.g. from the Features screen)."""
        if not self.is_mounted:
            self._pending_feature = (training_id, index)
            return
        self._pending_feature = None
        if not self.select_training(training_id):
            return
        box = self.query_one("#steer-features", Input)
        parts = [p.strip() for p in box.value.split(",") if p.strip()]
        if str(index) not in parts:
            parts.append(str(index))
        box.value = ", ".join(parts)
        strengths = self.query_one("#steer-strengths", Input)
        if not strengths.value.strip():
            strengths.value = "4"
        self.set_status(f"feature {index} added; type a prompt and press Enter")
        self.query_one("#steer-prompt", Input).focus()  # what comes next is the prompt, not the SAE dropdown

    def build_request(self, need_strengths: bool = True) -> svc.SteeringRequest:
        """The request the form describes; ValueError names the field that is wrong.

        The analysis ops use no strength, so with `need_strengths` off an empty strengths box is no error.
        """
        training_id = self.training_id
        if training_id is None:
            raise ValueError("pick a training (a finished SAE with a model) first")
        numbers: dict[str, Any] = {}
        for wid, (name, kind, default) in NUMBER_FIELDS.items():
            raw = self.query_one(f"#{wid}", Input).value.strip()
            try:
                numbers[name] = kind(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name.replace('_', ' ')} {raw!r} is not a {kind.__name__} number") from None
        strengths_text = self.query_one("#steer-strengths", Input).value
        request = svc.SteeringRequest(
            training_id=training_id,
            features=svc.parse_features(training_id, self.query_one("#steer-features", Input).value),
            strengths=svc.parse_strengths(strengths_text) if need_strengths or strengths_text.strip() else [0.0],
            prompt=self.query_one("#steer-prompt", Input).value,
            method=str(self.query_one("#steer-method", Select).value),
            positions=str(self.query_one("#steer-positions", Select).value),
            units=str(self.query_one("#steer-units", Select).value),
            **numbers,
        )
        from mistudio_tui.db.models import Training

        svc.check_features(Training.get_by_id(training_id), request.features)
        return request

    def fill_form(self, request: svc.SteeringRequest) -> None:
        """Show `request` in the form (a loaded preset)."""
        select = self.query_one("#steer-training", Select)
        with select.prevent(Select.Changed):
            try:
                select.value = request.training_id
            except InvalidSelectValueError:  # the preset's training is no longer steerable
                self.set_status(f"the preset's training #{request.training_id} cannot be steered now")
                return
        self.query_one("#steer-features", Input).value = ", ".join(str(f) for f in request.features)
        self.query_one("#steer-strengths", Input).value = ", ".join(f"{s:g}" for s in request.strengths)
        self.query_one("#steer-method", Select).value = request.method
        self.query_one("#steer-units", Select).value = request.units
        self.query_one("#steer-positions", Select).value = request.positions
        for wid, (name, _, _) in NUMBER_FIELDS.items():
            self.query_one(f"#{wid}", Input).value = f"{getattr(request, name):g}"
        self.query_one("#steer-prompt", Input).value = request.prompt

    def set_status(self, text: str) -> None:
        self.query_one("#steer-status", Static).update(text)

    # --- events ----------------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "an-map-colour":
            self.draw_map()
        elif event.select.id == "steer-training":
            self.load_presets()
        elif event.select.id == "steer-preset" and isinstance(event.value, int):
            try:
                self.fill_form(svc.load_preset(event.value))
            except (ValueError, LookupError) as exc:
                self.set_status(str(exc))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id and event.input.id.startswith("steer-"):
            self.action_run()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        kind = ANALYSIS_BUTTONS.get(event.button.id or "")
        if kind is not None:
            self.action_analyse(kind)

    def palette_commands(self) -> Iterable[SystemCommand]:
        """The analysis ops by name (their buttons sit on the Analysis tab)."""
        for kind, title, help_text in ANALYSIS_COMMANDS:
            yield SystemCommand(title, help_text, partial(self.action_analyse, kind))

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def action_toggle_tab(self) -> None:
        tabs = self.query_one("#steer-tabs", TabbedContent)
        tabs.active = "tab-analysis" if tabs.active == "tab-compare" else "tab-compare"

    def action_analyse(self, kind: str) -> None:
        """Run an analysis op (ablate | cooccurrence | decoder_map) on the form's SAE, features and prompt."""
        self.query_one("#steer-tabs", TabbedContent).active = "tab-analysis"
        try:
            request = self.build_request(need_strengths=False)
        except (ValueError, LookupError) as exc:
            self.query_one("#an-result", Static).update(str(exc))
            return
        params: dict[str, Any] = {"training_id": request.training_id}
        if kind == "ablate":
            if not request.prompt:
                self.query_one("#an-result", Static).update("type a prompt to ablate the features on")
                return
            params.update(text=request.prompt, features=request.features)
        elif kind == "cooccurrence":
            texts = [request.prompt + t for t in self.texts.values() if t] or [request.prompt]
            if not any(texts):
                self.query_one("#an-result", Static).update("type a prompt (and run it) to scan for co-occurrence")
                return
            params.update(texts=texts, features=request.features, add_partners=HEATMAP_PARTNERS)
        self.query_one("#an-result", Static).update(f"running {kind.replace('_', ' ')}…")
        self.analysis_worker(kind, params, request.features)

    # --- actions ---------------------------------------------------------------------------------
    def action_run(self) -> None:
        try:
            request = self.build_request()
        except (ValueError, LookupError) as exc:
            self.set_status(str(exc))
            return
        if not request.prompt:
            self.set_status("type a prompt to continue")
            self.query_one("#steer-prompt", Input).focus()
            return
        self.action_stop()
        self._run += 1
        self.request, self.result, self.texts = request, None, {}
        self.query_one("#steer-normal", Static).update("")
        self.query_one("#steer-steered", Static).update("")
        self.query_one("#steer-tabs", TabbedContent).active = "tab-compare"
        self.set_status("generating… (ctrl+g stops)")
        for warning in request.warnings():  # legal but almost surely a mistake (a strength of 1e9)
            self.notify(warning, severity="warning")
        self.generate_worker(self._run, request)

    def action_stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def action_save_preset(self) -> None:
        from mistudio_tui.ui.modals.form import Field, FormModal

        try:
            request = self.build_request()
        except (ValueError, LookupError) as exc:
            self.set_status(str(exc))
            return

        def save(values: dict[str, Any] | None) -> None:
            if not values:
                return
            try:
                preset = svc.save_preset(values["name"], request, overwrite=bool(values.get("overwrite")))
            except ValueError as exc:
                self.set_status(str(exc))
                return
            self.load_presets()
            self.set_status(f"saved preset {preset.name!r}")

        fields = [
            Field("name", "Preset name", required=True),
            Field("overwrite", "Replace a preset of that name", "bool"),
        ]
        self.app.push_screen(FormModal("Save steering preset", fields, "Save"), save)

    def action_export(self) -> None:
        from mistudio_tui.ui.modals.form import Field, FormModal

        if self.request is None or self.result is None:
            self.set_status("nothing to export yet: run a comparison first")
            return
        request, result = self.request, self.result
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        default = self.studio.paths.home / "exports" / f"steering-{stamp}.txt"

        def export(values: dict[str, Any] | None) -> None:
            if not values:
                return
            path = Path(values["path"]).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                written = svc.export_comparison(path, request, result)
            except (OSError, ValueError) as exc:
                self.set_status(f"export failed: {exc}")
                return
            self.set_status(f"exported to {written}")

        fields = [Field("path", "File (.json for JSON, anything else for text)", default=str(default), required=True)]
        self.app.push_screen(FormModal("Export comparison", fields, "Export"), export)

    # --- workers ---------------------------------------------------------------------------------
    def session(self) -> Any:
        """The inference session of this screen (started on first use)."""
        if self._session is None:
            self._session = self.studio.inference
        return self._session

    @work(thread=True, exclusive=True, group="steering-run", exit_on_error=False)
    def generate_worker(self, run: int, request: svc.SteeringRequest) -> None:
        try:
            stream = self.session().stream("generate", **request.params())
            self._stream = stream
            for item in stream:
                if "texts" in item:
                    self.post_message(self.Finished(run, item))
                else:
                    self.post_message(self.Piece(run, str(item["variant"]), str(item["token"])))
        except Exception as exc:  # shown in the status line, never raised into the UI
            self.post_message(self.Finished(run, None, str(exc) or type(exc).__name__))

    @work(thread=True, exclusive=True, group="steering-analysis", exit_on_error=False)
    def analysis_worker(self, kind: str, params: dict[str, Any], features: list[int]) -> None:
        try:
            result = self.session().call(kind, timeout=600, **params)
        except Exception as exc:  # shown in the analysis pane
            self.post_message(self.Analysed(kind, None, str(exc) or type(exc).__name__))
            return
        result = dict(result)
        result.setdefault("features", features)
        self.post_message(self.Analysed(kind, result))

    def on_steering_screen_piece(self, message: Piece) -> None:
        if message.run != self._run:
            return
        self.texts[message.variant] = self.texts.get(message.variant, "") + message.token
        self.show_texts()

    def on_steering_screen_finished(self, message: Finished) -> None:
        if message.run != self._run:
            return
        self._stream = None
        if message.result is None:
            self.set_status(message.error)
            return
        self.result = message.result
        self.texts = dict(message.result.get("texts", {}))
        self.show_texts()
        self.set_status(self.scale_summary(message.result) + "  ·  ctrl+o exports, ctrl+s saves a preset")

    def show_texts(self) -> None:
        prompt = self.request.prompt if self.request else ""
        self.query_one("#steer-normal", Static).update(prompt + self.texts.get("normal", ""))
        steered = [(k, v) for k, v in self.texts.items() if k != "normal"]
        if len(steered) == 1:
            body = prompt + steered[0][1]
        else:
            body = "\n\n".join(f"[{k}]\n{prompt}{v}" for k, v in steered)
        self.query_one("#steer-steered", Static).update(body)

    @staticmethod
    def scale_summary(result: dict[str, Any]) -> str:
        """One line: each feature's max activation and the added norm (each strength's own in a sweep) relative
        to the hook's typical norm; then what to worry about (a feature that never fired, a huge norm)."""
        parts = []
        variants = result.get("variant_scales") or {"": result.get("scales") or {}}
        features = {str(f): s for scales in variants.values() for f, s in scales.items()}
        for feature, scale in features.items():
            norms = [
                (name.removeprefix("steered:"), scales[key].get("relative_norm"))
                for name, scales in variants.items()
                for key in scales
                if str(key) == feature
            ]
            adds = ", ".join(f"{rel:.2g}×" + (f" at {name}" if name else "") for name, rel in norms if rel is not None)
            rel_text = f", adds {adds} typical norm" if adds else ""
            parts.append(f"#{feature}: max act {scale.get('max_act', 0):.3g}{rel_text}")
        warnings = svc.scale_warnings(result, coefficient_hint="units: absolute coefficient")
        return "; ".join([*parts, *(f"⚠ {w}" for w in warnings)]) or "done"

    def on_steering_screen_analysed(self, message: Analysed) -> None:
        out = self.query_one("#an-result", Static)
        if message.result is None:
            out.update(message.error)
            return
        result = message.result
        if message.kind == "ablate":
            promoted = ", ".join(f"{tok!r} {d:+.2f}" for tok, _, d in result["promoted"][:5])
            suppressed = ", ".join(f"{tok!r} {d:+.2f}" for tok, _, d in result["suppressed"][:5])
            out.update(
                f"loss {result['loss_clean']:.4f} → {result['loss_ablated']:.4f} ({result['loss_delta']:+.4f}); "
                f"active on {result['n_active']} tokens\npromoted: {promoted}\nsuppressed: {suppressed}"
            )
        elif message.kind == "cooccurrence":
            lines = [f"{result['tokens_seen']} tokens scanned"]
            for feature, partners in result["partners"].items():
                ranked = ", ".join(f"#{p['id']} ({p['jaccard']:.2f})" for p in partners[:6])
                lines.append(f"#{feature} fires with: {ranked or 'nothing'}")
            out.update("\n".join(lines))
            self.query_one(CooccurrenceHeatmap).show(result["features"], result["jaccard"])
        else:
            out.update(f"{len(result['coords'])} decoder directions mapped by {result['method']}")
            self._map_result = result
            self.draw_map()

    def draw_map(self) -> None:
        """Draw the last decoder map, coloured as the colour select says (by density band or label)."""
        result = getattr(self, "_map_result", None)
        training_id = self.query_one("#steer-training", Select).value
        if result is None:
            return
        by = str(self.query_one("#an-map-colour", Select).value)
        groups = svc.map_groups(training_id, by) if isinstance(training_id, int) else {}
        self.query_one(DecoderMap).show(result["coords"], result["features"], result["method"], groups)

    def on_unmount(self) -> None:
        self.action_stop()
        self._session = None  # the session is the app's, shared with other screens
