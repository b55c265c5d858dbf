"""Steering requests, presets (the SteeringPreset table) and exports of a normal-vs-steered comparison.

Torch-free: the model work runs in the inference worker (`mistudio_tui.inference.session`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import SteeringPreset, Training, database, utcnow
from mistudio_tui.db.states import RunState

METHODS = ("add", "clamp")
POSITIONS = ("all", "prompt", "generated")
# strengths are multiples of each feature's max activation ("max"), or absolute coefficients as SAELens takes them
UNITS = ("max", "absolute")
MAX_NEW_TOKENS = 4096
HUGE_STRENGTH = 100.0  # × max activation: beyond this the steered text is noise; say so
HUGE_RELATIVE_NORM = 100.0  # × the hook's typical norm, for absolute coefficients
READY = RunState.USABLE


@dataclass
class SteeringRequest:
    """Everything one steering comparison needs; `params()` is what the `generate` op takes."""

    training_id: int
    features: list[int]
    strengths: list[float]
    prompt: str = ""
    method: str = "add"
    positions: str = "all"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 32
    seed: int = 0
    feature_strengths: dict[int, float] = field(default_factory=dict)  # per-feature strength when not sweeping
    units: str = "max"

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("no features given: add at least one feature index")
        if any(int(f) < 0 for f in self.features):
            raise ValueError(f"feature indices must be 0 or more, got {self.features}")
        if not self.strengths and not self.feature_strengths:
            raise ValueError("no strength given: add at least one strength (in units of the feature's max activation)")
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not supported; expected add or clamp")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions {self.positions!r} is not supported; expected all, prompt or generated")
        if self.units not in UNITS:
            raise ValueError(f"units {self.units!r} are not supported; expected max or absolute")
        if not 1 <= self.max_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max tokens must be from 1 to {MAX_NEW_TOKENS:,}, got {self.max_tokens:,}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")

    def params(self) -> dict[str, Any]:
        """Keyword arguments of the `generate` op."""
        single = self.strengths[0] if len(self.strengths) == 1 else 1.0
        interventions = [
            {"feature": int(f), "strength": float(self.feature_strengths.get(f, single)), "method": self.method}
            for f in self.features
        ]
        return {
            "training_id": self.training_id,
            "prompt": self.prompt,
            "interventions": interventions,
            "strengths": [float(s) for s in self.strengths] if len(self.strengths) > 1 else None,
            "positions": self.positions,
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "max_tokens": int(self.max_tokens),
            "seed": int(self.seed),
            "units": self.units,
        }

    def warnings(self) -> list[str]:
        """What is legal but almost surely a mistake (a strength of 1e9)."""
        if self.units != "max":
            return []
        huge = [s for s in [*self.strengths, *self.feature_strengths.values()] if abs(s) > HUGE_STRENGTH]
        if not huge:
            return []
        return [
            f"strength {huge[0]:g} is {abs(huge[0]):g}× the feature's max activation; "
            f"beyond {HUGE_STRENGTH:g} the steered text is usually noise"
        ]

    def to_config(self) -> dict[str, Any]:
        """The JSON a preset stores (without the training, which the preset row links)."""
        data = asdict(self)
        data.pop("training_id")
        data["feature_strengths"] = {str(k): v for k, v in self.feature_strengths.items()}
        return data

    @classmethod
    def from_config(cls, training_id: int, config: dict[str, Any]) -> SteeringRequest:
        """Rebuild a request from a preset's config (unknown keys ignored)."""
        known = {k: v for k, v in config.items() if k in cls.__dataclass_fields__ and k != "training_id"}
        known["feature_strengths"] = {int(k): float(v) for k, v in (known.get("feature_strengths") or {}).items()}
        try:
            return cls(training_id=training_id, **known)
        except TypeError as exc:
            raise ValueError(f"the preset config is not a steering config: {exc}") from None


def steerable_training(ref: str | int) -> Training:
    """The training `ref` (id or name), checked to be finished and to have a model."""
    training = resolve(Training, ref)
    if training.status not in RunState.USABLE:
        raise ValueError(f"training '{training.name}' is {training.status}; steering needs a finished SAE")
    if training.model is None:
        raise ValueError(f"training '{training.name}' has no language model to steer")
    return training


def check_features(training: Training, features: Sequence[int]) -> None:
    """Raise when a feature index is outside the training's SAE."""
    if training.d_sae:
        bad = [f for f in features if not 0 <= int(f) < training.d_sae]
        if bad:
            last = training.d_sae - 1
            raise ValueError(f"feature {bad[0]} is out of range; training '{training.name}' has features 0..{last}")


# --- presets ---------------------------------------------------------------------------------------
def save_preset(name: str, request: SteeringRequest, overwrite: bool = False) -> SteeringPreset:
    """Store `request` as preset `name` (an existing one is replaced only with `overwrite`)."""
    name = name.strip()
    if not name:
        raise ValueError("a preset needs a name")
    with database.atomic():
        preset = SteeringPreset.get_or_none(SteeringPreset.name == name)
        if preset is not None and not overwrite:
            raise ValueError(f"a steering preset named {name!r} exists; choose another name or overwrite it")
        if preset is None:
            preset = SteeringPreset(name=name)
        preset.training_id = request.training_id
        preset.config = request.to_config()
        preset.created_at = utcnow()
        preset.save()
    return preset


def load_preset(ref: str | int) -> SteeringRequest:
    """The request stored in preset `ref` (id or name)."""
    preset = resolve(SteeringPreset, ref)
    if preset.training_id is None:
        raise ValueError(f"steering preset '{preset.name}' has lost its training (it was deleted)")
    return SteeringRequest.from_config(preset.training_id, dict(preset.config or {}))


def preset_summary(preset: SteeringPreset) -> dict[str, Any]:
    """One preset as a plain dict for lists and JSON."""
    config = dict(preset.config or {})
    return {
        "id": preset.id,
        "name": preset.name,
        "training": preset.training.name if preset.training is not None else None,
        "features": config.get("features", []),
        "strengths": config.get("strengths", []),
        "method": config.get("method", "add"),
        "prompt": config.get("prompt", ""),
        "created_at": preset.created_at,
        "config": config,
    }


# --- export ----------------------------------------------------------------------------------------
def comparison_text(request: SteeringRequest, result: dict[str, Any]) -> str:
    """A readable normal-vs-steered comparison."""
    lines = [
        f"prompt: {result.get('prompt', request.prompt)}",
        f"features: {', '.join(str(f) for f in request.features)}  method: {request.method}  "
        f"positions: {request.positions}  strengths: "
        + ("absolute coefficients" if request.units == "absolute" else "× max activation"),
        f"temperature: {request.temperature:g}  top-p: {request.top_p:g}  max tokens: {request.max_tokens}  "
        f"seed: {request.seed}",
    ]
    lines += scale_lines(result)
    for variant, text in (result.get("texts") or {}).items():
        lines += ["", f"== {variant} ==", text]
    return "\n".join(lines) + "\n"


def scale_lines(result: dict[str, Any]) -> list[str]:
    """Per feature: its max activation and the added norm, for a sweep each strength's own:
    'feature 5: max activation 0.223, added norm (× the hook's typical norm) 0.0201 at strength 1, 0.16 at 8'."""
    variants = result.get("variant_scales") or {"": result.get("scales") or {}}
    sizes: dict[str, list[str]] = {}
    maxima: dict[str, float] = {}
    relative = True
    for variant, scales in variants.items():
        for feature, scale in scales.items():
            key = str(feature)
            maxima[key] = scale.get("max_act", maxima.get(key, 0))
            rel = scale.get("relative_norm")
            relative = relative and rel is not None
            size = f"{rel:.3g}" if rel is not None else f"{scale.get('added_norm', 0):.4g}"
            strength = variant.removeprefix("steered:")
            sizes.setdefault(key, []).append(f"{size} at {'strength ' if not sizes.get(key) else ''}{strength}")
    unit = " (× the hook's typical norm)" if relative else ""
    lines = []
    for feature, parts in sizes.items():
        shown = ", ".join(parts) if len(variants) > 1 else parts[0].split(" at ")[0]
        lines.append(f"feature {feature}: max activation {maxima[feature]:.4g}, added norm{unit} {shown}")
    return lines


def scale_warnings(result: dict[str, Any], coefficient_hint: str = "--coefficient") -> list[str]:
    """Features that never fired (their max activation is unknown) and added norms far above the hook's;
    `coefficient_hint` says how to give an absolute coefficient where the warning is read."""
    out = []
    for feature, scale in (result.get("scales") or {}).items():
        if scale.get("never_fired") and scale.get("units", "max") == "max":
            source = scale.get("source") or "the data seen"
            out.append(
                f"feature {feature} never fired ({source}), so its max activation is unknown and 1 is assumed; "
                f"give an absolute coefficient instead ({coefficient_hint})"
            )
    largest: dict[str, float] = {}
    for scales in (result.get("variant_scales") or {"": result.get("scales") or {}}).values():
        for feature, scale in scales.items():
            largest[str(feature)] = max(largest.get(str(feature), 0.0), scale.get("relative_norm") or 0.0)
    for feature, rel in largest.items():
        if rel > HUGE_RELATIVE_NORM:
            out.append(f"feature {feature} adds {rel:.3g}× the hook's typical norm; the steered text is likely noise")
    return out


def comparison_json(request: SteeringRequest, result: dict[str, Any]) -> dict[str, Any]:
    """The comparison as JSON-able data: the request and what came back."""
    return {
        "training_id": request.training_id,
        "request": request.to_config(),
        "texts": result.get("texts", {}),
        "scales": {str(k): v for k, v in (result.get("scales") or {}).items()},
        "variant_scales": {
            name: {str(k): v for k, v in scales.items()}
            for name, scales in (result.get("variant_scales") or {}).items()
        },
    }


def export_comparison(path: Path | str, request: SteeringRequest, result: dict[str, Any]) -> Path:
    """Write the comparison to `path`: JSON when it ends in .json, text otherwise."""
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {path}: the folder {path.parent} does not exist")
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(comparison_json(request, result), indent=2), encoding="utf-8")
    else:
        path.write_text(comparison_text(request, result), encoding="utf-8")
    return path


# --- choosing trainings, features and strengths ----------------------------------------------------
def steerable_trainings() -> list[Training]:
    """Finished trainings that have a language model, newest first."""
    query = Training.select().where(Training.status.in_(RunState.USABLE) & Training.model.is_null(False))
    return list(query.order_by(Training.id.desc()))


def newest_feature_set(training_id: int) -> Any:
    """The training's newest ready FeatureSet, or None."""
    from mistudio_tui.db.models import FeatureSet

    return (
        FeatureSet.select()
        .where((FeatureSet.training == training_id) & (FeatureSet.status == "ready"))
        .order_by(FeatureSet.id.desc())
        .first()
    )


DENSITY_BANDS = (("dead", 0.0), ("rare < 1e-4", 1e-4), ("1e-4 – 1e-2", 1e-2), ("dense ≥ 1e-2", float("inf")))
MAP_COLOURINGS = ("none", "density", "label")


def map_groups(training_id: int, by: str) -> dict[str, list[int]]:
    """Feature indices grouped for colouring the decoder map: by density band or labelled/unlabelled.

    Empty when `by` is "none" or the training has no feature set yet (the map is then drawn in one colour)."""
    from mistudio_tui.db.models import Feature

    if by not in MAP_COLOURINGS:
        raise ValueError(f"colour the map by one of {', '.join(MAP_COLOURINGS)}, not {by!r}")
    fset = newest_feature_set(training_id)
    if by == "none" or fset is None:
        return {}
    rows = Feature.select(Feature.index, Feature.density, Feature.dead, Feature.semantic_label).where(
        Feature.feature_set == fset
    )
    if by == "label":
        groups: dict[str, list[int]] = {"labelled": [], "unlabelled": []}
        for f in rows.tuples().iterator():
            groups["labelled" if f[3] else "unlabelled"].append(f[0])
        return groups
    groups = {name: [] for name, _ in DENSITY_BANDS}
    for index, density, dead, _ in rows.tuples().iterator():
        if dead or density <= 0:
            groups["dead"].append(index)
            continue
        name = next(name for name, upper in DENSITY_BANDS[1:] if density < upper)
        groups[name].append(index)
    return groups


def search_features(training_id: int, term: str, limit: int = 10) -> list[tuple[int, str]]:
    """(index, label) of features whose label or top tokens contain `term`, in the newest ready feature set."""
    from mistudio_tui.db.models import Feature

    fset = newest_feature_set(training_id)
    if fset is None or not term.strip():
        return []
    term = term.strip()
    match = Feature.semantic_label.contains(term) | Feature.technical_label.contains(term)
    match = match | Feature.top_tokens.contains(term)
    rows = Feature.select().where((Feature.feature_set == fset) & match).order_by(Feature.index).limit(limit)
    return [(f.index, f.semantic_label or f.technical_label or f.top_tokens) for f in rows]


def parse_features(training_id: int, text: str) -> list[int]:
    """Feature indices from "3, 17 happy": numbers as given, words looked up in the feature labels."""
    found: list[int] = []
    for part in [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]:
        if part.lstrip("#").isdigit():
            found.append(int(part.lstrip("#")))
            continue
        hits = search_features(training_id, part, limit=1)
        if not hits:
            raise ValueError(f"no feature label or top token matches {part!r}; give a feature index instead")
        found.append(hits[0][0])
    if not found:
        raise ValueError("no features given: type feature indices (3, 17) or words from their labels")
    return list(dict.fromkeys(found))


def parse_strengths(text: str) -> list[float]:
    """Strengths from "2" or "0, 2, 5" (several make a sweep)."""
    values: list[float] = []
    for part in [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]:
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(f"strength {part!r} is not a number") from None
    if not values:
        raise ValueError("no strength given: type one (2) or several for a sweep (0, 2, 5)")
    return values


def presets_for(training_id: int | None = None) -> list[SteeringPreset]:
    """Saved presets (those of `training_id` first), by name."""
    rows = list(SteeringPreset.select().order_by(SteeringPreset.name))
    return sorted(rows, key=lambda p: p.training_id != training_id)
