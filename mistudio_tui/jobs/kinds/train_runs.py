"""A training run's stored config and row: building and checking the config, creating the row, and the typed
parameters that train it. The services (new, clone, resume) and the sweep job (its trials) both go through here,
so the trainer's SAEConfig / TrainConfig stay the one check of a run's values.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mistudio_tui.config import Paths
from mistudio_tui.db.models import ActivationSet, LanguageModel, Tokenization, Training
from mistudio_tui.db.ownership import create_pending
from mistudio_tui.jobs.kinds.train import ActivationsSource, EvalModel, TrainParams
from mistudio_tui.jobs.params import FieldError
from mistudio_tui.ml.sae.config import K_ARCHITECTURES, SAEConfig, TrainConfig, architecture_id

SAE_KEYS = (
    "architecture",
    "d_sae",
    "k",
    "l1_coefficient",
    "jumprelu_bandwidth",
    "jumprelu_init_threshold",
    "jumprelu_pre_act_coefficient",
    "l0_coefficient",
    "aux_k",
    "aux_k_coefficient",
    "dead_tokens_threshold",
    "apply_b_dec_to_input",
    "matryoshka_widths",
)
TRAIN_DEFAULTS: dict[str, Any] = {
    "total_tokens": 2_000_000,
    "batch_size": 4096,
    "lr": None,
    "device": "auto",
    "dtype": "fp32",
    "seed": 0,
    "checkpoint_every": 500,
    "metrics_every": 10,
}


def training_config(
    d_in: int,
    architecture: str = "topk",
    k: int | None = None,
    l1_coefficient: float | None = None,
    expansion: int | None = None,
    d_sae: int | None = None,
    template: dict[str, Any] | None = None,
    matryoshka_widths: list[int] | None = None,
    **train: Any,
) -> dict[str, Any]:
    """The {'sae': ..., 'train': ...} config of a run: template first, then explicit values (checked by the trainer's
    SAEConfig and TrainConfig, see `checked_configs`)."""
    base = template or {}
    sae: dict[str, Any] = dict(base.get("sae", {}))
    train_cfg: dict[str, Any] = dict(TRAIN_DEFAULTS)
    train_cfg.update(base.get("train", {}))
    sae["architecture"] = architecture_id(architecture or sae.get("architecture") or "topk")
    if d_sae is not None and expansion is not None:
        raise ValueError("give either --expansion or --d-sae, not both")
    factor = sae.pop("expansion", None)
    if d_sae is None:
        d_sae = int(d_in * (expansion if expansion is not None else factor or 8))
    if d_sae <= 0:
        raise ValueError("the SAE width must be positive")
    sae.update(d_in=int(d_in), d_sae=int(d_sae))
    if k is not None:
        sae["k"] = int(k)
    if l1_coefficient is not None:
        sae["l1_coefficient"] = float(l1_coefficient)
    if sae["architecture"] in K_ARCHITECTURES:
        sae.setdefault("k", config_default("k"))  # stored, so the run list can show it
    for key in [key for key in train if key in SAE_KEYS]:  # SAE fields given with the training options
        value = train.pop(key)
        if value is not None:
            sae[key] = value
    if matryoshka_widths is not None:
        sae["matryoshka_widths"] = matryoshka_widths
    elif sae["architecture"] != "matryoshka":
        sae.pop("matryoshka_widths", None)  # a cloned matryoshka run's widths, when its clone is another kind
    train_cfg.update({key: value for key, value in train.items() if value is not None})
    config = {"sae": sae, "train": train_cfg}
    sae_cfg, _ = checked_configs(config)
    if "matryoshka_widths" in sae:
        sae["matryoshka_widths"] = sae_cfg.matryoshka_widths  # as trained (d_sae appended when not last)
    return config


def checked_configs(config: dict[str, Any]) -> tuple[SAEConfig, TrainConfig]:
    """The trainer's (torch-free) SAEConfig and TrainConfig of a run config: the one check of its values, run before
    any row exists; FieldError names the config key (their messages start with it)."""
    try:
        return SAEConfig.from_dict(dict(config["sae"])), TrainConfig.from_dict(dict(config["train"]))
    except (ValueError, TypeError, OverflowError) as exc:
        message = str(exc)
        key = message.split(" ", 1)[0]
        raise FieldError(key if key in config["sae"] or key in config["train"] else "", message) from None


def config_problem(config: dict[str, Any] | None) -> str | None:
    """What the trainer refuses in a stored run config (None when it accepts it): such a run re-fails on resume."""
    try:
        checked_configs({"sae": (config or {}).get("sae") or {}, "train": (config or {}).get("train") or {}})
    except ValueError as exc:
        return str(exc)
    return None


def config_default(key: str) -> Any:
    """The trainer's default for an SAE or training config key (shown in forms)."""
    if key in TRAIN_DEFAULTS:
        return TRAIN_DEFAULTS[key]
    for cls in (SAEConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name == key:
                return f.default
    raise KeyError(key)


def hook_width(aset: ActivationSet, hook: str | None) -> int:
    """The width of one hook of an activation set (its per-hook record where the widths differ)."""
    by_hook = (aset.manifest or {}).get("d_in_by_hook") or {}
    width = by_hook.get(hook) or aset.d_in
    if width is None:
        raise ValueError(f"activation set '{aset.name}' does not record its width (d_in)")
    return int(width)


def create_training(paths: Paths, config: dict[str, Any], **fields: Any) -> Training:
    """A pending Training row for `config` (plus `fields`), with its folder under the home's saes/."""
    sae = config["sae"]
    return create_pending(
        paths,
        Training,
        "saes",
        architecture=sae["architecture"],
        d_in=sae["d_in"],
        d_sae=sae["d_sae"],
        config=config,
        total_tokens=int(config["train"]["total_tokens"]),
        **fields,
    )


def train_params(training: Training, resume: bool, config: dict[str, Any] | None = None) -> TrainParams:
    """What trains (or resumes) `training` (with `config` instead of the row's)."""
    config = config or training.config
    aset = training.activation_set
    model = training.model
    tok = training.tokenization
    metadata = {**run_metadata(model, tok, aset.context_size if aset else None), "hook_name": training.hook_name}
    hook_out = training.config.get("hook_name_out")
    if hook_out:  # a transcoder: rows are [input hook | output hook]
        metadata["hook_name_out"] = hook_out
    sae, train = checked_configs(config)
    return TrainParams(
        sae=sae,
        train=train,
        source=ActivationsSource(
            dir=Path(aset.path) if aset and aset.path else None, hook=training.hook_name, hook_out=hook_out
        ),
        out_dir=Path(training.path),
        resume=resume,
        metadata=metadata,
        eval=eval_params(model, tok),
    )


def train_job_title(training: Training, resume: bool) -> str:
    return f"{'Resume' if resume else 'Train'} {training.name}"


def run_metadata(model: LanguageModel | None, tok: Tokenization | None, context_size: int | None) -> dict[str, Any]:
    """Where a run's activations come from, as recorded with the trained SAE."""
    return {
        "model_name": model.reference if model else None,
        "context_size": context_size,
        "prepend_bos": tok.prepend_bos if tok else True,
        "dataset_path": tok.dataset.source if tok else None,
    }


def eval_params(model: LanguageModel | None, tok: Tokenization | None, **more: Any) -> EvalModel:
    """The model and tokenization an SAE evaluation runs through (none where the run has none)."""
    return EvalModel(
        model_path=model.path if model else None,
        model_dtype=model.dtype if model else None,
        tokenization_dir=Path(tok.path) if tok and tok.path else None,
        is_causal_lm=bool(model.is_causal_lm) if model else False,
        **more,
    )
