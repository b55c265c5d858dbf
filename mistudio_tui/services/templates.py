"""Training templates: save a run's configuration, list, load into a new run, export/import as JSON, favourites."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import Training, TrainingTemplate
from mistudio_tui.ml.sae.config import B_DEC_INITS, LR_DECAYS, OPTIMIZERS, TRAIN_DTYPES, SAEConfig, TrainConfig
from mistudio_tui.services.template_store import TemplateStore
from mistudio_tui.services.trainings import ARCHITECTURES, architecture_id, shown_architecture

FORMAT_NAME = "mistudio.training-template"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FieldRule:
    """How one template field is checked: its JSON kind, a bound and whether it may be null."""

    kind: str  # int | number | bool | str | choice | pair
    bound: str = ""  # ">0" | ">=0" | "0..1"
    choices: tuple[str, ...] = ()
    nullable: bool = False


_KINDS = {"int": "int", "float": "number", "bool": "bool", "str": "str", "tuple[float, float]": "pair"}
_CHOICES = {
    "architecture": ARCHITECTURES,
    "lr_decay": LR_DECAYS,
    "optimizer": OPTIMIZERS,
    "b_dec_init": B_DEC_INITS,
    "dtype": TRAIN_DTYPES,
}
# The bounds SAEConfig / TrainConfig enforce in __post_init__, per field, so a template error names one field.
_BOUNDS: dict[str, tuple[str, ...]] = {
    ">0": (
        "k",
        "jumprelu_bandwidth",
        "jumprelu_init_threshold",
        "aux_k",
        "dead_tokens_threshold",
        "total_tokens",
        "batch_size",
        "lr",
        "grad_clip",
        "init_tokens",
        "metrics_every",
        "density_hist_every",
        "checkpoint_every",
    ),
    ">=0": (
        "l1_coefficient",
        "l0_coefficient",
        "aux_k_coefficient",
        "decoder_init_norm",
        "jumprelu_pre_act_coefficient",
        "lr_warmup_steps",
        "sparsity_warmup_steps",
        "keep_checkpoints",
        "eval_tokens",
    ),
    "0..1": ("lr_decay_start", "final_lr_fraction", "adam_betas"),
}


def _rules(cls: type, skip: tuple[str, ...]) -> dict[str, FieldRule]:
    """A rule per field of dataclass `cls` (but `skip`), its kind and nullability read from the annotation."""
    rules: dict[str, FieldRule] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        annotation = str(f.type)
        kind = _KINDS.get(annotation.removesuffix(" | None"))
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: no template rule for type {annotation!r}; add it to skip")
        choices = _CHOICES.get(f.name, ())
        bound = next((b for b, names in _BOUNDS.items() if f.name in names), "")
        rules[f.name] = FieldRule("choice" if choices else kind, bound, choices, annotation.endswith(" | None"))
    return rules


# The fields of the trainer's SAEConfig / TrainConfig a template may carry (widths are kept as an expansion
# factor so a template fits any activation set; absolute Matryoshka widths would not, so they stay out, and so do
# a transcoder's output width and skip: they follow from the hooks a run is given, not from its recipe).
_NOT_TEMPLATED = ("d_in", "d_sae", "expansion_factor", "matryoshka_widths", "d_out", "skip_connection")
SAE_FIELDS: dict[str, FieldRule] = {"expansion": FieldRule("number", ">0"), **_rules(SAEConfig, skip=_NOT_TEMPLATED)}
TRAIN_FIELDS: dict[str, FieldRule] = _rules(TrainConfig, skip=("metadata",))
SECTIONS = {"sae": SAE_FIELDS, "train": TRAIN_FIELDS}


def check_value(where: str, rule: FieldRule, value: Any) -> Any:
    """`value` if it fits `rule` (ints accepted for numbers); ValueError naming `where` otherwise."""
    if value is None:
        if rule.nullable:
            return None
        raise ValueError(f"{where} must not be empty")
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if rule.kind in ("str", "choice"):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        if rule.choices and value not in rule.choices:
            raise ValueError(f"{where} is {value!r}; expected one of {', '.join(rule.choices)}")
        return value
    if rule.kind == "pair":
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ValueError(f"{where} must be a list of two numbers, got {value!r}")
        number = FieldRule("number", rule.bound)
        return [check_value(f"{where}[{i}]", number, v) for i, v in enumerate(value)]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if rule.kind == "int" and not is_int:
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if rule.kind == "number" and not (is_int or isinstance(value, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    ok = {">0": value > 0, ">=0": value >= 0, "0..1": 0 <= value <= 1}.get(rule.bound, True)
    if not ok:
        expected = {">0": "> 0", ">=0": ">= 0", "0..1": "between 0 and 1"}[rule.bound]
        raise ValueError(f"{where} must be {expected}, got {value!r}")
    return value


def check_field(where: str, key: str, rule: FieldRule, value: Any) -> Any:
    """`check_value`; an architecture is read by either of its names and kept by its internal one."""
    if key == "architecture" and isinstance(value, str):
        return architecture_id(check_value(where, rule, shown_architecture(value)))
    return check_value(where, rule, value)


def validate_config(config: Any, source: str = "template") -> dict[str, Any]:
    """A clean {'sae': ..., 'train': ...} config; ValueError naming `source` and the first bad field."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: config must be an object with 'sae' and 'train' sections")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{source}: unknown section {unknown[0]!r}; expected 'sae' and 'train'")
    out: dict[str, dict[str, Any]] = {}
    for section, rules in SECTIONS.items():
        values = config.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{source}: {section} must be an object of field values")
        out[section] = {}
        for key, value in values.items():
            rule = rules.get(key)
            if rule is None:
                hint = "; use expansion (a multiple of d_in)" if key == "d_sae" else ""
                raise ValueError(f"{source}: unknown field {section}.{key}{hint}")
            value = check_field(f"{source}: {section}.{key}", key, rule, value)
            if key == "expansion" and float(value).is_integer():
                value = int(value)
            out[section][key] = value
    return out


def config_from_training(training: Training) -> dict[str, Any]:
    """A run's configuration as a template config (its width as an expansion factor)."""
    sae = dict(training.config.get("sae") or {})
    d_in, d_sae = sae.pop("d_in", training.d_in), sae.pop("d_sae", training.d_sae)
    if d_in and d_sae:
        ratio = d_sae / d_in
        sae["expansion"] = int(ratio) if ratio == int(ratio) else ratio
    if sae.get("d_out"):  # a transcoder never subtracts b_dec from its input: that is no choice of its recipe
        sae.pop("apply_b_dec_to_input", None)
    sae = {k: v for k, v in sae.items() if k in SAE_FIELDS}
    train = {k: v for k, v in (training.config.get("train") or {}).items() if k in TRAIN_FIELDS}
    return validate_config({"sae": sae, "train": train}, f"training '{training.name}'")


def config_from_values(
    architecture: str | None = None, expansion: float | None = None, **values: Any
) -> dict[str, Any]:
    """A template config from explicit values: SAE fields go to 'sae', the rest to 'train'."""
    sae: dict[str, Any] = {}
    train: dict[str, Any] = {}
    if architecture is not None:
        sae["architecture"] = architecture
    if expansion is not None:
        sae["expansion"] = expansion
    for key, value in values.items():
        if value is None:
            continue
        if key in SAE_FIELDS:
            sae[key] = value
        elif key in TRAIN_FIELDS:
            train[key] = value
        else:
            raise ValueError(f"unknown template field {key!r}")
    return validate_config({"sae": sae, "train": train}, "template")


STORE: TemplateStore[TrainingTemplate] = TemplateStore(
    TrainingTemplate, FORMAT_NAME, FORMAT_VERSION, "training template", validate_config, description_key="note"
)


def save_template(
    name: str,
    config: dict[str, Any],
    description: str = "",
    favourite: bool = False,
    overwrite: bool = False,
) -> TrainingTemplate:
    """Store `config` under `name` (replacing an existing one only when `overwrite`; False keeps its favourite)."""
    return STORE.save(name, config, description, favourite or None, overwrite)


def save_from_training(ref: str | int, name: str, description: str = "", overwrite: bool = False) -> TrainingTemplate:
    """Save the configuration of training `ref` as a template."""
    training = resolve(Training, ref)
    note = description or f"from training '{training.name}'"
    return save_template(name, config_from_training(training), note, overwrite=overwrite)


def list_templates() -> list[TrainingTemplate]:
    """Favourites first, then by name."""
    return STORE.list_all()


def get_template(ref: str | int) -> TrainingTemplate:
    """The template with this id or name."""
    return STORE.get(ref)


def template_config(ref: str | int) -> dict[str, Any]:
    """A copy of a template's config, ready for `new_training(template_config=...)`."""
    return STORE.config(ref)


def set_favourite(ref: str | int, favourite: bool | None = None) -> TrainingTemplate:
    """Mark (or with None, toggle) a template as a favourite."""
    return STORE.set_favourite(ref, favourite)


def delete_template(ref: str | int) -> str:
    """Delete a template; returns its name (runs made from it keep their own config)."""
    return STORE.delete(ref)


def template_document(tpl: TrainingTemplate) -> dict[str, Any]:
    """The exported JSON document of a template (versioned)."""
    return STORE.document(tpl)


def export_template(ref: str | int, path: str | Path) -> Path:
    """Write a template to a JSON file (a folder gets '<name>.json' inside it)."""
    return STORE.export(ref, path)


def read_template_file(path: str | Path) -> dict[str, Any]:
    """Parse and validate an exported template file: {'name', 'note', 'favourite', 'config'}."""
    doc = STORE.read(path)
    return {"name": doc["name"], "note": doc["description"], "favourite": doc["favourite"], "config": doc["config"]}


def import_template(path: str | Path, name: str | None = None, overwrite: bool = False) -> TrainingTemplate:
    """Create a template from an exported file (optionally under another name)."""
    return STORE.import_file(path, name, overwrite)


def describe_config(config: dict[str, Any]) -> str:
    """A one-line summary such as 'topk ×8 k=32 lr=auto 2,000,000 tokens'."""
    sae, train = config.get("sae") or {}, config.get("train") or {}
    parts = [shown_architecture(str(sae.get("architecture", "topk")))]
    if "expansion" in sae:
        parts.append(f"×{sae['expansion']:g}")
    for key, label in (("k", "k"), ("l1_coefficient", "l1"), ("l0_coefficient", "l0")):
        if key in sae:
            parts.append(f"{label}={sae[key]:g}")
    if "lr" in train:
        parts.append("lr=auto" if train["lr"] is None else f"lr={train['lr']:g}")
    if "total_tokens" in train:
        parts.append(f"{train['total_tokens']:,} tokens")
    return " ".join(parts)
