"""Models: registered models with their architecture and hook points, and their activation sets."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Checkbox, DataTable, Input, Select, Static, Tree

from mistudio_tui.db.models import ActivationSet, ExtractionTemplate, LanguageModel, Tokenization
from mistudio_tui.services import extraction_templates as templates
from mistudio_tui.services import models as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, open_job_form, start_spec
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.record_table import RecordTable
from mistudio_tui.units import format_bytes


class ExtractForm(FormModal):
    """The extraction form: choosing a template fills the other fields with its settings."""

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "field-template" or event.value in (Select.NULL, None):
            return
        row = ExtractionTemplate.get_or_none(ExtractionTemplate.id == event.value)
        if row is None:
            return
        config = {**templates.EXTRACTION_DEFAULTS, **row.config}
        if config["hooks"]:
            self.query_one("#field-hooks", Input).value = ", ".join(config["hooks"])
        for key in ("n_tokens", "batch_size", "shard_tokens", "device"):
            self.query_one(f"#field-{key}", Input).value = str(config[key])
        self.query_one("#field-store_dtype", Select).value = config["store_dtype"]
        self.query_one("#field-exclude_bos", Checkbox).value = bool(config["exclude_bos"])


def hook_summary(hook_points: list[dict[str, Any]]) -> str:
    """The hook points in one line: blocks.{0..11}.hook_attn_out|hook_mlp_out|..."""
    layers = sorted({h["layer"] for h in hook_points if h.get("layer") is not None})
    kinds = sorted({h["name"].split(".")[-1] for h in hook_points if h["name"].startswith("blocks.")})
    span = f"blocks.{{{layers[0]}..{layers[-1]}}}" if layers else "blocks.L"
    return f"{span}.{'|'.join(kinds)}"


class ModelsScreen(StudioScreen):
    """Models and activation sets on the left; the selected model's architecture on the right."""

    TITLE_TEXT = "Models"
    BINDINGS = [
        Binding("a", "add_model", "Add", id="models.add"),
        Binding("e", "extract", "Extract acts", id="models.extract"),
        Binding("i", "import_acts", "Import acts", id="models.import", show=False),
        Binding("r", "resume", "Resume extraction", id="models.resume", show=False),
        Binding("f", "favourite", "Favourite template", id="models.favourite", show=False),
        Binding("x", "delete", "Delete", id="models.delete"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Models", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 22),
                        ("status", "Status", 9),
                        ("type", "Type", 9),
                        ("d", "d_model", 7),
                        ("layers", "Layers", 6),
                        ("params", "Params", 7),
                    ],
                    flex="name",
                    id="models-table",
                )
                yield Static("Activation sets", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 26),
                        ("status", "Status", 9),
                        ("tok", "Tokenization", 20),
                        ("d", "d_in", 5),
                        ("tokens", "Tokens", 7),
                    ],
                    flex="name",
                    id="activations-table",
                    classes="short",
                )
            with Vertical(classes="detail-pane"):
                yield Static("", id="model-detail", classes="detail")
                yield Tree("modules", id="module-tree")

    def reload(self) -> None:
        models = list(LanguageModel.select().order_by(LanguageModel.id))
        self.query_one("#models-table", RecordTable).set_records(
            [
                (
                    m.id,
                    (
                        m.name,
                        fmt.status_text(m.status),
                        m.model_type or "-",
                        str(m.d_model or "-"),
                        str(m.n_layers or "-"),
                        fmt.count(m.n_params),
                    ),
                )
                for m in models
            ]
        )
        sets = list(ActivationSet.select().order_by(ActivationSet.id))
        self.query_one("#activations-table", RecordTable).set_records(
            [
                (
                    a.id,
                    (
                        a.name,
                        fmt.status_text(a.status),
                        a.tokenization.name if a.tokenization else "(imported)",
                        str(a.d_in or "-"),
                        fmt.count(a.n_tokens),
                    ),
                )
                for a in sets
            ]
        )
        self.show_selected()

    @property
    def model(self) -> LanguageModel | None:
        rid = self.query_one("#models-table", RecordTable).selected_id
        return LanguageModel.get_or_none(LanguageModel.id == rid) if rid is not None else None

    @property
    def activation_set(self) -> ActivationSet | None:
        rid = self.query_one("#activations-table", RecordTable).selected_id
        return ActivationSet.get_or_none(ActivationSet.id == rid) if rid is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "models-table":
            self.show_selected()

    def show_selected(self) -> None:
        model = self.model
        detail = self.query_one("#model-detail", Static)
        tree = self.query_one("#module-tree", Tree)
        if model is None:
            detail.update("No models yet.\n\na: add a local folder or a hub model · s on Datasets: build the sample")
            tree.clear()
            return
        arch: dict[str, Any] = model.architecture or {}
        hooks = arch.get("hook_points", [])
        lines = [
            f"[b]{escape(model.name)}[/b]  {model.family or model.model_type or ''}",
            model_origin(model),
            f"d_model {model.d_model or '-'} · layers {model.n_layers or '-'} · vocab {model.vocab_size or '-'} · "
            f"params {fmt.count(model.n_params)}",
            f"dtype {model.dtype}"
            + (f" · {model.quantization}" if model.quantization else "")
            + (f" · weights ≈ {format_bytes(arch['memory_estimate'])}" if arch.get("memory_estimate") else ""),
        ]
        if hooks:
            lines.append(f"hook points: {hook_summary(hooks)}")
        if model.error:
            lines.append(f"[red]error: {escape(model.error)}[/red]")
        detail.update("\n".join(lines))
        self._fill_tree(tree, arch.get("modules"), hooks)

    def _fill_tree(self, tree: Tree[Any], node: dict[str, Any] | None, hooks: list[dict[str, Any]]) -> None:
        tree.clear()
        if not node:
            tree.root.set_label("modules (inspect the model to see them)")
            return
        tree.root.set_label(self._node_label(node))

        def add(parent: Any, children: list[dict[str, Any]]) -> None:
            for child in children:
                kids = child.get("children") or []
                if kids:
                    add(parent.add(self._node_label(child)), kids)
                else:
                    parent.add_leaf(self._node_label(child))

        add(tree.root, node.get("children") or [])
        if hooks:
            branch = tree.root.add(f"hook points ({len(hooks)})")
            for hook in hooks:
                module = hook.get("module_path")
                branch.add_leaf(hook["name"] + (f"  [dim]{escape(module)}[/dim]" if module else ""))
        tree.root.expand()

    @staticmethod
    def _node_label(node: dict[str, Any]) -> str:
        name = node.get("name") or "model"
        params = node.get("total_params") or node.get("params")
        repeat = f" ×{node['repeat']}" if node.get("repeat") else ""
        return f"{name}: {node.get('class', '')}{repeat}  [dim]{fmt.count(params)}[/dim]"

    # --- actions ---------------------------------------------------------------------------------
    def action_add_model(self) -> None:
        fields = [
            Field("source", "Local folder or hub id", required=True, placeholder="EleutherAI/pythia-70m"),
            Field("name", "Name (optional)"),
            Field("revision", "Hub revision (optional)"),
            Field(
                "dtype",
                "dtype",
                kind="choice",
                choices=[(d, d) for d in svc.DTYPES],
                default="float32",
                required=True,
            ),
            Field(
                "quantization",
                "Quantization (CUDA only)",
                kind="choice",
                choices=[("8-bit", "8bit"), ("4-bit", "4bit")],
            ),
            Field("trust_remote_code", "Trust remote code (runs code from the repo)", kind="bool"),
        ]

        def build(values: dict[str, Any]) -> Any:
            return svc.add_model(
                self.studio,
                values["source"],
                name=values["name"],
                revision=values["revision"],
                dtype=values["dtype"],
                quantization=values["quantization"],
                trust_remote_code=values["trust_remote_code"],
            )

        open_job_form(self, FormModal("Add a model", fields, "Add", build=build))

    def action_extract(self) -> None:
        model = self.model
        if model is None or model.status != "ready":
            self.notify("Select a ready model first", severity="warning")
            return
        toks = [(t.name, t.id) for t in Tokenization.select().where(Tokenization.status == "ready")]
        if not toks:
            self.notify("Tokenize a dataset first (Datasets screen, t)", severity="warning")
            return
        same = [
            t.id
            for t in Tokenization.select().where((Tokenization.status == "ready") & (Tokenization.model == model.id))
        ]
        points = (model.architecture or {}).get("hook_points", [])
        middle = f"blocks.{max((model.n_layers or 1) // 2, 0)}.hook_resid_post"
        default_hook = middle if any(h["name"] == middle for h in points) else (points[0]["name"] if points else "")
        choices = [(t.name + (" ★" if t.favourite else ""), t.id) for t in templates.list_templates()]
        d = templates.EXTRACTION_DEFAULTS
        fields = [
            Field("template", "Template (fills the fields below; favourites first)", kind="choice", choices=choices),
            Field(
                "tokenization",
                "Tokenization",
                kind="choice",
                choices=toks,
                required=True,
                default=same[0] if same else toks[0][1],
            ),
            Field(
                "hooks",
                "Hook points (comma-separated)",
                required=True,
                default=default_hook,
                help=f"valid: {hook_summary(points)} or a module path" if points else "",
            ),
            Field("n_tokens", "Tokens", kind="int", default="200k"),
            Field("batch_size", "Batch size (sequences)", kind="int", default=d["batch_size"]),
            Field("shard_tokens", "Tokens per shard", kind="int", default=d["shard_tokens"]),
            Field(
                "store_dtype",
                "Stored dtype",
                kind="choice",
                choices=[(x, x) for x in templates.STORE_DTYPES],
                default=d["store_dtype"],
                required=True,
            ),
            Field("exclude_bos", "Leave out BOS positions", kind="bool", default=d["exclude_bos"]),
            Field("device", "Device", default=d["device"]),
            Field("name", "Name (optional)"),
            Field("save_as", "Save these settings as a template named (optional)"),
        ]

        def build(values: dict[str, Any]) -> Any:
            settings = {
                "hooks": [h.strip() for h in values["hooks"].split(",") if h.strip()],
                "n_tokens": values["n_tokens"],
                "batch_size": values["batch_size"],
                "shard_tokens": values["shard_tokens"],
                "store_dtype": values["store_dtype"],
                "exclude_bos": values["exclude_bos"],
                "device": values["device"],
            }

            spec = svc.extract_activations(
                self.studio, model.id, values["tokenization"], name=values["name"], **settings
            )
            if values["save_as"]:  # only once the settings are known to be valid
                saved = templates.save_template(values["save_as"], settings)
                self.notify(f"saved template '{saved.name}'")
            return spec

        open_job_form(self, ExtractForm(f"Extract activations of {model.name}", fields, "Extract", build=build))

    def action_favourite(self) -> None:
        rows = templates.list_templates()
        if not rows:
            self.notify("No extraction templates yet: save one from the extract form (e)", severity="warning")
            return
        fields = [
            Field(
                "template",
                "Template",
                kind="choice",
                required=True,
                choices=[(t.name + (" ★" if t.favourite else ""), t.id) for t in rows],
                default=rows[0].id,
            )
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                row = templates.set_favourite(values["template"])
                mark = "is now a favourite ★" if row.favourite else "is no longer a favourite"
                self.notify(f"'{row.name}' {mark}")

        self.app.push_screen(FormModal("Mark or unmark a favourite template", fields, "Toggle ★"), done)

    def action_resume(self) -> None:
        aset = self.activation_set
        if aset is None:
            self.notify("Select an activation set first", severity="warning")
            return
        start_spec(self, lambda: svc.resume_extraction(self.studio, aset.id))

    def action_import_acts(self) -> None:
        fields = [
            Field("path", "safetensors file or folder of shards", required=True),
            Field("key", "Tensor name (if several)"),
            Field("name", "Name (optional)"),
        ]

        def build(values: dict[str, Any]) -> Any:
            return svc.import_activations(self.studio, values["path"], key=values["key"], name=values["name"])

        open_job_form(self, FormModal("Import activations", fields, "Import", build=build))

    def action_delete(self) -> None:
        focused = self.focused
        if isinstance(focused, RecordTable) and focused.id == "activations-table" and self.activation_set:
            confirm_delete(self, self.activation_set)
        elif self.model is not None:
            confirm_delete(self, self.model)


def model_origin(model: LanguageModel) -> str:
    """Where a model comes from: its hub id (and revision), or the folder it is in now."""
    if model.source_type == "hub":
        return f"source: {escape(model.source)}" + (f" @ {escape(model.revision)}" if model.revision else "")
    return ("built-in sample · " if model.source_type == "sample" else "") + f"folder: {escape(model.reference)}"
