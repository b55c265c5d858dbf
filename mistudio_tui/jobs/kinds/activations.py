"""Activation-set kinds: `activations.extract` (a model over a tokenization), `activations.import` (files computed
elsewhere) and `activations.synth` (a synthetic set with known true features)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.finishers import apply_resource_fields
from mistudio_tui.jobs.params import JobParams
from mistudio_tui.jobs.registry import JobKind, register
from mistudio_tui.ml.activations.synthetic import SynthOptions

ENTRY = "mistudio_tui.jobs.tasks.activations"
STORE_DTYPES = ("float32", "float16", "bfloat16")
# The extraction settings a template may hold, with their defaults (the rest of ExtractParams comes from the rows).
EXTRACTION_DEFAULTS: dict[str, Any] = {
    "hooks": [],
    "n_tokens": 200_000,
    "batch_size": 8,
    "shard_tokens": 65_536,
    "store_dtype": "float32",
    "exclude_bos": True,
    "exclude_special": True,
    "device": "auto",
}
_POSITIVE_INTS = ("n_tokens", "batch_size", "shard_tokens")
_BOOLS = ("exclude_bos", "exclude_special")


def check_settings(config: Mapping[str, Any], where: str = "template") -> dict[str, Any]:
    """Extraction settings (some or all) with their types checked; ValueError naming `where` and the field otherwise."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: the settings must be a JSON object, not {type(config).__name__}")
    unknown = sorted(set(config) - set(EXTRACTION_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(EXTRACTION_DEFAULTS)}")
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is None:
            continue
        if key == "hooks":
            hooks = [value] if isinstance(value, str) else value
            if not isinstance(hooks, (list, tuple)) or not all(isinstance(h, str) and h.strip() for h in hooks):
                raise ValueError(f"{where}: hooks must be a list of hook point names, not {value!r}")
            out[key] = [h.strip() for h in hooks]
        elif key in _POSITIVE_INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{where}: {key} must be a positive whole number, not {value!r}")
            out[key] = value
        elif key in _BOOLS:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {key} must be true or false, not {value!r}")
            out[key] = value
        elif key == "store_dtype":
            if value not in STORE_DTYPES:
                raise ValueError(f"{where}: store_dtype must be one of {', '.join(STORE_DTYPES)}, not {value!r}")
            out[key] = value
        elif key == "device":
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: device must be a name like auto, cpu or cuda:0, not {value!r}")
            out[key] = value.strip()
    return out


@dataclass(frozen=True, kw_only=True)
class ExtractParams(JobParams):
    """Run the model in `model_path` over the tokenization and store the activations of `hooks` in `out_dir`."""

    kind = "activations.extract"
    model_path: str
    tokenization_dir: Path
    out_dir: Path
    hooks: tuple[str, ...]
    n_tokens: int
    model_dtype: str = "float32"
    quantization: str | None = None
    trust_remote_code: bool = False
    batch_size: int = 8
    shard_tokens: int = 65_536
    store_dtype: str = "float32"
    exclude_bos: bool = True
    exclude_special: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hooks", tuple(self.hooks))
        if not self.hooks:
            raise ValueError(
                "give at least one hook point, e.g. blocks.0.hook_resid_post (see `mistudio models hooks`)"
            )
        check_settings({key: getattr(self, key) for key in EXTRACTION_DEFAULTS}, "extraction settings")


@dataclass(frozen=True, kw_only=True)
class ImportParams(JobParams):
    """Register the activations in `path` (a safetensors file, or a folder of shards) as the set in `out_dir`."""

    kind = "activations.import"
    path: Path
    out_dir: Path
    key: str | None = None  # the tensor to read, in a file holding several


@dataclass(frozen=True, kw_only=True)
class SynthParams(JobParams):
    """Generate the synthetic world `options` into `out_dir`."""

    kind = "activations.synth"
    options: SynthOptions
    out_dir: Path

    def __post_init__(self) -> None:
        self.options.check()


register(
    JobKind(
        "activations.extract",
        f"{ENTRY}:extract",
        title="Extract activations",
        finish=apply_resource_fields,
        params=ExtractParams,
    )
)
register(
    JobKind(
        "activations.import",
        f"{ENTRY}:import_set",
        title="Import activations",
        finish=apply_resource_fields,
        params=ImportParams,
    )
)
register(
    JobKind(
        "activations.synth",
        f"{ENTRY}:synth",
        title="Synthesize activations",
        finish=apply_resource_fields,
        params=SynthParams,
    )
)
