"""Models: registered models with their architecture and hook points, and their activation sets."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static, Tree

from mistudio_tui.db.models import ActivationSet, ExtractionTemplate, LanguageModel, Tokenization
from mistudio_tui.services import models as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, start_spec
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.screens.jobs import status_text
from mistudio_tui.ui.widgets.record_table import RecordTable


class ModelsScreen(StudioScreen):
    """Models and activation sets on the left; the selected model's architecture on the right."""

    TITLE_TEXT = "Models"
    BINDINGS = [
        Binding("a", "add_model", "Add", id="models.add"),
        Binding("e", "extract", "Extract acts", id="models.extract"),
        Binding("i", "import_acts", "Import acts", id="models.import", show=False),
        Binding("x", "delete", "Delete", id="models.delete"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Models", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 22),
                        ("type", "Type", 9),
                        ("d", "d_model", 7),
                        ("layers", "Layers", 6),
                        ("params", "Params", 7),
                        ("status", "Status", 9),
                    ],
                    id="models-table",
                )
                yield Static("Activation sets", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 26),
                        ("tok", "Tokenization", 20),
                        ("d", "d_in", 5),
                        ("tokens", "Tokens", 7),
                        ("status", "Status", 9),
                    ],
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
                        m.model_type or "-",
                        str(m.d_model or "-"),
                        str(m.n_layers or "-"),
                        fmt.count(m.n_params),
                        status_text(m.status),
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
                        a.tokenization.name if a.tokenization else "(imported)",
                        str(a.d_in or "-"),
                        fmt.count(a.n_tokens),
                        status_text(a.status),
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
            f"[b]{model.name}[/b]  {model.family or model.model_type or ''}",
            f"source: {model.source}" + (f" @ {model.revision}" if model.revision else ""),
            f"d_model {model.d_model or '-'} · layers {model.n_layers or '-'} · vocab {model.vocab_size or '-'} · "
            f"params {fmt.count(model.n_params)}",
            f"dtype {model.dtype}"
            + (f" · {model.quantization}" if model.quantization else "")
            + (f" · est. memory {fmt.count(arch['memory_estimate'])}B" if arch.get("memory_estimate") else ""),
        ]
        if hooks:
            layers = sorted({h.get("layer") for h in hooks if h.get("layer") is not None})
            kinds = sorted({h["name"].split(".")[-1] for h in hooks if h["name"].startswith("blocks.")})
            span = f"blocks.{{{layers[0]}..{layers[-1]}}}" if layers else "blocks.L"
            lines.append(f"hook points: {span}.{'|'.join(kinds)}")
        if model.error:
            lines.append(f"[red]error: {model.error}[/red]")
        detail.update("\n".join(lines))
        self._fill_tree(tree, arch.get("modules"))

    def _fill_tree(self, tree: Tree, node: dict[str, Any] | None) -> None:
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

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: svc.add_model(
                        self.studio,
                        values["source"],
                        name=values["name"],
                        revision=values["revision"],
                        dtype=values["dtype"],
                        quantization=values["quantization"],
                        trust_remote_code=values["trust_remote_code"],
                    ),
                )

        self.app.push_screen(FormModal("Add a model", fields, "Add"), done)

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
        hooks = [(h["name"], h["name"]) for h in (model.architecture or {}).get("hook_points", [])]
        middle = f"blocks.{max((model.n_layers or 1) // 2, 0)}.hook_resid_post"
        templates = [
            (t.name + (" ★" if t.favourite else ""), t.id)
            for t in ExtractionTemplate.select().order_by(ExtractionTemplate.favourite.desc(), ExtractionTemplate.name)
        ]
        fields = [
            Field(
                "tokenization",
                "Tokenization",
                kind="choice",
                choices=toks,
                required=True,
                default=same[0] if same else toks[0][1],
            ),
            Field(
                "hook",
                "Hook point",
                kind="choice",
                choices=hooks,
                required=True,
                default=middle if any(v == middle for _, v in hooks) else (hooks[0][1] if hooks else None),
            ),
            Field("n_tokens", "Tokens", kind="int", default="200k"),
            Field("batch_size", "Batch size (sequences)", kind="int", default=8),
            Field("template", "Template (optional)", kind="choice", choices=templates),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: svc.extract_activations(
                        self.studio,
                        model.id,
                        values["tokenization"],
                        hooks=[values["hook"]],
                        n_tokens=values["n_tokens"],
                        batch_size=values["batch_size"],
                        template=values["template"],
                    ),
                )

        self.app.push_screen(FormModal(f"Extract activations of {model.name}", fields, "Extract"), done)

    def action_import_acts(self) -> None:
        fields = [
            Field("path", "safetensors file or folder of shards", required=True),
            Field("key", "Tensor name (if several)"),
            Field("name", "Name (optional)"),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: svc.import_activations(self.studio, values["path"], key=values["key"], name=values["name"]),
                )

        self.app.push_screen(FormModal("Import activations", fields, "Import"), done)

    def action_delete(self) -> None:
        focused = self.focused
        if isinstance(focused, RecordTable) and focused.id == "activations-table" and self.activation_set:
            confirm_delete(self, self.activation_set)
        elif self.model is not None:
            confirm_delete(self, self.model)
