"""Hook points named the TransformerLens/SAELens way, mapped onto Hugging Face modules; capture and patching.

`blocks.L.hook_resid_pre` is the input of block L, `blocks.L.hook_resid_post` its output,
`blocks.L.hook_resid_mid` the residual stream between attention and MLP (absent where the family has none,
e.g. GPT-NeoX with a parallel residual), and `hook_attn_out` / `hook_mlp_out` what the attention / MLP add to
the residual stream. Any module path (`transformer.h.3.mlp.c_fc`) names that module's output.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

STANDARD_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
_STANDARD_NAME = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$")
_LAYER_IN_PATH = re.compile(r"\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class HookPoint:
    """One place activations can be read or replaced: a module's input or output."""

    name: str
    module_path: str
    kind: str
    layer: int | None
    io: str = "output"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "name": self.name,
            "module_path": self.module_path,
            "kind": self.kind,
            "layer": self.layer,
            "io": self.io,
        }


@dataclass(frozen=True)
class FamilySpec:
    """Where a family keeps its blocks and, relative to a block, each site: (submodule, input | output)."""

    layers: tuple[str, ...]
    sites: Mapping[str, tuple[str, str]]


_LLAMA_SITES = {
    "resid_mid": ("post_attention_layernorm", "input"),
    "attn_out": ("self_attn", "output"),
    "mlp_out": ("mlp", "output"),
}
# Gemma 2/3 normalise each sublayer's output before adding it: the residual receives the post-norm output.
_GEMMA2_SITES = {
    "resid_mid": ("pre_feedforward_layernorm", "input"),
    "attn_out": ("post_attention_layernorm", "output"),
    "mlp_out": ("post_feedforward_layernorm", "output"),
}
_NEOX_SITES = {
    "resid_mid": ("post_attention_layernorm", "input"),
    "attn_out": ("attention", "output"),
    "mlp_out": ("mlp", "output"),
}
_GPT2_SITES = {
    "resid_mid": ("ln_2", "input"),
    "attn_out": ("attn", "output"),
    "mlp_out": ("mlp", "output"),
}
# BERT is post-LN: the sublayer contributions are the dense projections before the residual add and LayerNorm.
_BERT_SITES = {
    "resid_mid": ("attention.output", "output"),
    "attn_out": ("attention.output.dense", "output"),
    "mlp_out": ("output.dense", "output"),
}

FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec(("h",), _GPT2_SITES),
    "gpt_neox": FamilySpec(("layers",), _NEOX_SITES),
    "llama": FamilySpec(("layers",), _LLAMA_SITES),
    "mistral": FamilySpec(("layers",), _LLAMA_SITES),
    "qwen2": FamilySpec(("layers",), _LLAMA_SITES),
    "qwen3": FamilySpec(("layers",), _LLAMA_SITES),
    "gemma": FamilySpec(("layers",), _LLAMA_SITES),
    "gemma2": FamilySpec(("layers",), _GEMMA2_SITES),
    "gemma3": FamilySpec(("layers",), _GEMMA2_SITES),
    "bert": FamilySpec(("encoder.layer",), _BERT_SITES),
}
MODEL_TYPE_FAMILY = {"gemma3_text": "gemma3", "roberta": "bert"}
_GENERIC_LAYER_NAMES = ("layers", "h", "encoder.layer", "blocks", "decoder.layers")


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once every requested activation was recorded."""


def family_of(config: Any) -> str:
    """The hook family of a config's model_type ('generic' for families without a table entry)."""
    model_type = str(getattr(config, "model_type", "") or "")
    model_type = MODEL_TYPE_FAMILY.get(model_type, model_type)
    return model_type if model_type in FAMILIES else "generic"


def unwrap_model(model: Any) -> nn.Module:
    """The torch module of a LoadedModel (or the module itself)."""
    inner = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch module or a LoadedModel, got {type(model).__name__}")
    return model


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def _find_blocks(model: nn.Module, layer_names: Iterable[str]) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer blocks (preferring the language model's in multimodal models)."""
    names = tuple(layer_names)
    found: list[tuple[str, nn.ModuleList]] = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if any(path == n or path.endswith("." + n) for n in names):
            found.append((path, module))
    if not found:
        raise ValueError(
            f"cannot find the transformer blocks of {type(model).__name__}: no module list named "
            f"{' or '.join(names)}; use a module path as the hook name instead"
        )
    language = [f for f in found if "language_model" in f[0]]
    if language:
        return language[0]
    return min(found, key=lambda f: ("vision" in f[0] or "audio" in f[0], f[0].count(".")))


def _generic_sites(block: nn.Module) -> dict[str, tuple[str, str]]:
    """Guess the standard sites of an unknown family from its block's submodule names."""
    children = dict(block.named_children())
    sites: dict[str, tuple[str, str]] = {}
    if "pre_feedforward_layernorm" in children and "post_feedforward_layernorm" in children:
        return dict(_GEMMA2_SITES)
    attn = next((n for n in ("self_attn", "attn", "attention") if n in children), None)
    mlp = next((n for n in ("mlp", "feed_forward", "block_sparse_moe") if n in children), None)
    if attn:
        sites["attn_out"] = (attn, "output")
    if mlp:
        sites["mlp_out"] = (mlp, "output")
    mid = next((n for n in ("post_attention_layernorm", "ln_2") if n in children), None)
    if mid and attn and mlp:
        sites["resid_mid"] = (mid, "input")
    return sites


class _HookTable:
    """The standard hook points of one model, computed once."""

    def __init__(self, model: nn.Module) -> None:
        config = getattr(model, "config", None)
        self.family = family_of(config) if config is not None else "generic"
        spec = FAMILIES.get(self.family)
        layer_names = spec.layers if spec else _GENERIC_LAYER_NAMES
        self.blocks_path, blocks = _find_blocks(model, layer_names)
        self.n_layers = len(blocks)
        sites = dict(spec.sites) if spec else _generic_sites(blocks[0])
        text_config = _text_config(config) if config is not None else None
        if self.family == "gpt_neox" and getattr(text_config, "use_parallel_residual", False):
            sites.pop("resid_mid", None)
        self.points: dict[str, HookPoint] = {}
        for layer in range(self.n_layers):
            block_path = f"{self.blocks_path}.{layer}"
            self._add(layer, "resid_pre", block_path, "input")
            for kind in ("resid_mid", "attn_out", "mlp_out"):
                if kind in sites:
                    sub, io = sites[kind]
                    self._add(layer, kind, f"{block_path}.{sub}", io)
            self._add(layer, "resid_post", block_path, "output")
        self.kinds = [k for k in STANDARD_KINDS if f"blocks.0.hook_{k}" in self.points]

    def _add(self, layer: int, kind: str, module_path: str, io: str) -> None:
        name = f"blocks.{layer}.hook_{kind}"
        self.points[name] = HookPoint(name, module_path, kind, layer, io)


_TABLES: weakref.WeakKeyDictionary[nn.Module, _HookTable] = weakref.WeakKeyDictionary()


def _table(model: nn.Module) -> _HookTable:
    table = _TABLES.get(model)
    if table is None:
        table = _HookTable(model)
        _TABLES[model] = table
    return table


def n_layers(model: Any) -> int:
    """Number of transformer blocks."""
    return _table(unwrap_model(model)).n_layers


def list_hook_points(model: Any, include_modules: bool = False) -> list[HookPoint]:
    """The standard hook points in forward order; with `include_modules`, every module's output as well."""
    module = unwrap_model(model)
    table = _table(module)
    points = list(table.points.values())
    if include_modules:
        standard_paths = {(p.module_path, p.io) for p in points}
        for path, _ in module.named_modules():
            if path and (path, "output") not in standard_paths:
                points.append(_module_point(table, path))
    return points


def _module_point(table: _HookTable, path: str) -> HookPoint:
    layer = None
    prefix = table.blocks_path + "."
    if path.startswith(prefix):
        match = _LAYER_IN_PATH.match("." + path[len(prefix) :])
        layer = int(match.group(1)) if match else None
    return HookPoint(path, path, "module", layer, "output")


def valid_names_summary(model: Any) -> str:
    """A compact description of valid hook names, for error messages."""
    module = unwrap_model(model)
    table = _table(module)
    kinds = "|".join(f"hook_{k}" for k in table.kinds)
    example = next(
        (p for p, m in module.named_modules() if p.startswith(f"{table.blocks_path}.0.") and not list(m.children())),
        f"{table.blocks_path}.0",
    )
    return f"blocks.{{0..{table.n_layers - 1}}}.{kinds} or any module path such as {example}"


def resolve_hook(model: Any, name: str) -> HookPoint:
    """The HookPoint of a standard name or module path; a wrong name raises ValueError listing valid ones."""
    module = unwrap_model(model)
    table = _table(module)
    point = table.points.get(name)
    if point is not None:
        return point
    if not _STANDARD_NAME.match(name) and name:
        try:
            module.get_submodule(name)
        except AttributeError:
            pass
        else:
            return _module_point(table, name)
    raise ValueError(f"unknown hook point {name!r}; expected {valid_names_summary(module)}")


def _first_tensor(value: Any) -> torch.Tensor:
    """The activation in a module's output: a tensor, or the first element of a tuple / model output."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Sequence) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if isinstance(value, Mapping) and value:
        first = next(iter(value.values()))
        if isinstance(first, torch.Tensor):
            return first
    raise TypeError(f"cannot find an activation tensor in a module output of type {type(value).__name__}")


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    """`value` with its activation tensor replaced by `new`, keeping the container type."""
    if isinstance(value, torch.Tensor):
        return new
    if isinstance(value, tuple):
        return (new, *value[1:])
    if isinstance(value, list):
        return [new, *value[1:]]
    if isinstance(value, MutableMapping):  # a ModelOutput
        key = next(iter(value.keys()))
        value[key] = new
        return value
    raise TypeError(f"cannot replace the activation in a module output of type {type(value).__name__}")


def _input_activation(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    hidden = kwargs.get("hidden_states")
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise TypeError("cannot find the hidden states among the module's inputs")


class Capture:
    """Activations recorded by `capture`; `run(**inputs)` does one forward pass (ending early when asked)."""

    def __init__(self, model: nn.Module, points: list[HookPoint], stop_after_last: bool) -> None:
        self.model = model
        self.points = points
        self.stop_after_last = stop_after_last
        self.activations: dict[str, torch.Tensor] = {}
        self._pending: set[str] = set()
        self.reset()

    def reset(self) -> None:
        """Forget recorded activations (done before each `run`)."""
        self.activations = {}
        self._pending = {p.name for p in self.points}

    def _record(self, names: list[str], activation: torch.Tensor) -> None:
        for name in names:
            self.activations[name] = activation.detach()
            self._pending.discard(name)
        if self.stop_after_last and not self._pending:
            self._pending = {p.name for p in self.points}
            raise _StopForward()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model; returns its output, or None when the pass was ended after the last hook point."""
        self.reset()
        try:
            return self.model(*args, **kwargs)
        except _StopForward:
            return None

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            raise KeyError(f"no activation recorded for {name!r}; run a forward pass inside the capture first")
        return self.activations[name]


def _group_by_site(points: list[HookPoint]) -> dict[tuple[str, str], list[str]]:
    sites: dict[tuple[str, str], list[str]] = {}
    for p in points:
        sites.setdefault((p.module_path, p.io), []).append(p.name)
    return sites


@contextmanager
def capture(model: Any, hook_names: Sequence[str], stop_after_last: bool = True) -> Iterator[Capture]:
    """Record the activations at `hook_names` during forward passes, ending each pass after the last one.

    Use `cap.run(**inputs)`; calling the model directly inside the block also works (the early stop then
    leaves the block, whose remaining statements are skipped).
    """
    module = unwrap_model(model)
    if isinstance(hook_names, str):
        hook_names = [hook_names]
    if not hook_names:
        raise ValueError("capture needs at least one hook name")
    points = [resolve_hook(module, n) for n in dict.fromkeys(hook_names)]
    cap = Capture(module, points, stop_after_last)
    handles = []
    try:
        for (path, io), names in _group_by_site(points).items():
            target = module.get_submodule(path)
            if io == "input":

                def pre_hook(
                    _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str] = names
                ) -> None:
                    cap._record(names, _input_activation(args, kwargs))

                handles.append(target.register_forward_pre_hook(pre_hook, with_kwargs=True))
            else:

                def hook(_m: nn.Module, _args: tuple[Any, ...], output: Any, names: list[str] = names) -> None:
                    cap._record(names, _first_tensor(output))

                handles.append(target.register_forward_hook(hook))
        yield cap
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def run_with_capture(
    model: Any, hook_names: Sequence[str], *args: Any, stop_after_last: bool = True, **inputs: Any
) -> dict[str, torch.Tensor]:
    """One forward pass returning {hook name: activation}; stops after the last hooked module."""
    with capture(model, hook_names, stop_after_last=stop_after_last) as cap:
        cap.run(*args, **inputs)
    missing = [p.name for p in cap.points if p.name not in cap.activations]
    if missing:
        raise ValueError(f"hook points {', '.join(missing)} were never reached by the forward pass")
    return cap.activations


def _checked(name: str, old: torch.Tensor, new: Any) -> torch.Tensor:
    if not isinstance(new, torch.Tensor) or new.shape != old.shape:
        got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise ValueError(f"patch function for {name} returned {got}; expected a tensor of shape {tuple(old.shape)}")
    return new.to(old.dtype)


@contextmanager
def patch_activation(model: Any, hook_name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[HookPoint]:
    """Replace the activation at `hook_name` with `fn(activation)` in every forward pass inside the block.

    Works for every call, including `generate()` steps with a KV cache where the activation is [batch, 1, d].
    Patches nest; the innermost runs first.
    """
    module = unwrap_model(model)
    point = resolve_hook(module, hook_name)
    target = module.get_submodule(point.module_path)
    if point.io == "input":

        def pre_hook(
            _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            old = _input_activation(args, kwargs)
            new = _checked(point.name, old, fn(old))
            if args and args[0] is old:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        handle = target.register_forward_pre_hook(pre_hook, with_kwargs=True, prepend=True)
    else:

        def hook(_m: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            old = _first_tensor(output)
            return _replace_first(output, _checked(point.name, old, fn(old)))

        handle = target.register_forward_hook(hook, prepend=True)
    try:
        yield point
    finally:
        handle.remove()
