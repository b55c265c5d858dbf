"""A plain-JSON description of a model (sizes, parameter counts, module tree, hook points) for the UI."""

from __future__ import annotations

from typing import Any

from torch import nn

from mistudio_tui.ml.device import dtype_name
from mistudio_tui.ml.models.hooks import family_of, list_hook_points, n_layers, unwrap_model
from mistudio_tui.ml.models.memory import build_on_meta


def _config_value(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _total_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _signature(module: nn.Module) -> tuple[Any, ...]:
    """Structure of a module (classes and parameter shapes), to spot identical repeated blocks."""
    return tuple(
        (name, type(m).__name__, tuple((n, tuple(p.shape)) for n, p in m.named_parameters(recurse=False)))
        for name, m in module.named_modules()
    )


def _node(module: nn.Module, name: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "class": type(module).__name__,
        "params": _own_params(module),
        "total_params": _total_params(module),
        "children": _children(module, path),
    }


def _children(module: nn.Module, path: str) -> list[dict[str, Any]]:
    """Child nodes; in a list of identical blocks, the first is shown and the rest collapse into one node."""
    children = list(module.named_children())
    nodes: list[dict[str, Any]] = []
    collapse = isinstance(module, (nn.ModuleList, nn.Sequential)) and len(children) > 2
    first_signature = _signature(children[0][1]) if collapse else None
    i = 0
    while i < len(children):
        name, child = children[i]
        child_path = f"{path}.{name}" if path else name
        nodes.append(_node(child, name, child_path))
        if collapse and i == 0:
            j = 1
            while j < len(children) and _signature(children[j][1]) == first_signature:
                j += 1
            if j > 2:
                last = children[j - 1][0]
                nodes.append(
                    {
                        "name": f"{children[1][0]}..{last}",
                        "path": f"{path}.{{{children[1][0]}..{last}}}",
                        "class": type(child).__name__,
                        "params": 0,
                        "total_params": sum(_total_params(m) for _, m in children[1:j]),
                        "children": [],
                        "repeat": j - 1,
                        "same_as": child_path,
                    }
                )
                i = j
                continue
        i += 1
    return nodes


def describe_model(model: Any) -> dict[str, Any]:
    """Family, sizes, parameter counts, module tree and hook points of a model or LoadedModel, as JSON."""
    module = unwrap_model(model)
    config: Any = getattr(module, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = list(module.parameters())
    first = params[0] if params else None
    try:
        hooks = [p.to_dict() for p in list_hook_points(module)]
        layers: int | None = n_layers(module)
    except ValueError:
        hooks, layers = [], _config_value(text, "num_hidden_layers", "n_layer")
    d_model = _config_value(text, "hidden_size", "n_embd", "d_model")
    # GPT-2 style configs leave the MLP width unset, meaning 4 * d_model.
    d_mlp = _config_value(text, "intermediate_size", "n_inner") or (4 * d_model if d_model else None)
    return {
        "family": family_of(config) if config is not None else "generic",
        "model_type": str(getattr(config, "model_type", "")),
        "class": type(module).__name__,
        "d_model": d_model,
        "n_layers": layers,
        "n_heads": _config_value(text, "num_attention_heads", "n_head"),
        "n_kv_heads": _config_value(text, "num_key_value_heads", "num_attention_heads", "n_head"),
        "d_mlp": d_mlp,
        "vocab_size": _config_value(text, "vocab_size"),
        "context_length": _config_value(text, "max_position_embeddings", "n_positions", "n_ctx"),
        "total_params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "dtype": dtype_name(first.dtype) if first is not None else None,
        "device": str(first.device) if first is not None else None,
        "modules": _node(module, type(module).__name__, ""),
        "hook_points": hooks,
    }


def describe_config(config: Any) -> dict[str, Any]:
    """describe_model for a config or model folder, built on the meta device (no weights loaded)."""
    model = build_on_meta(config)
    description = describe_model(model)
    description["device"] = None
    return description
