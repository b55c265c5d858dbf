"""SAE trainings: configure a run on an activation set, resume it, clone it, evaluate it."""

from __future__ import annotations

import re
import secrets
from typing import Any

from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import ActivationSet, LanguageModel, Tokenization, Training, TrainingTemplate, database
from mistudio_tui.services.spec import FieldError, JobSpec, create_pending
from mistudio_tui.studio import Studio

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")
SAE_KEYS = (
    "architecture",
    "d_sae",
    "k",
    "l1_coefficient",
    "jumprelu_bandwidth",
    "jumprelu_init_threshold",
    "l0_coefficient",
    "aux_k",
    "aux_k_coefficient",
    "dead_tokens_threshold",
    "apply_b_dec_to_input",
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
    **train: Any,
) -> dict[str, Any]:
    """The {'sae': ..., 'train': ...} config of a run: template first, then explicit values."""
    base = template or {}
    sae: dict[str, Any] = dict(base.get("sae", {}))
    train_cfg: dict[str, Any] = dict(TRAIN_DEFAULTS)
    train_cfg.update(base.get("train", {}))
    if architecture:
        sae["architecture"] = architecture
    sae.setdefault("architecture", "topk")
    if sae["architecture"] not in ARCHITECTURES:
        raise ValueError(f"architecture {sae['architecture']!r} is not one of {', '.join(ARCHITECTURES)}")
    if d_sae is not None and expansion is not None:
        raise ValueError("give either --expansion or --d-sae, not both")
    if d_sae is None:
        factor = expansion if expansion is not None else sae.pop("expansion", None) or 8
        d_sae = int(d_in * factor)
    sae.pop("expansion", None)
    sae["d_in"] = int(d_in)
    sae["d_sae"] = int(d_sae)
    if d_sae <= 0:
        raise ValueError("the SAE width must be positive")
    if k is not None:
        sae["k"] = int(k)
    if l1_coefficient is not None:
        sae["l1_coefficient"] = float(l1_coefficient)
    if sae["architecture"] in ("topk", "batchtopk"):
        sae.setdefault("k", 32)
        if not 0 < sae["k"] <= d_sae:
            raise FieldError("k", f"k={sae['k']} must be between 1 and the SAE width {d_sae}")
    for key in [key for key in train if key in SAE_KEYS]:  # SAE fields given with the training options
        value = train.pop(key)
        if value is not None:
            sae[key] = value
    train_cfg.update({key: value for key, value in train.items() if value is not None})
    if int(train_cfg["total_tokens"]) <= 0:
        raise FieldError("total_tokens", "the token budget must be positive")
    if int(train_cfg["batch_size"]) <= 0:
        raise FieldError("batch_size", "the batch size must be positive")
    config = {"sae": sae, "train": train_cfg}
    check_config(config)
    return config


def check_config(config: dict[str, Any]) -> None:
    """Build the trainer's (torch-free) SAEConfig and TrainConfig, so a value the worker would refuse is refused here,
    before any row exists; FieldError names the config key (their messages start with it)."""
    from mistudio_tui.jobs.tasks.train import sae_config, train_config

    try:
        sae_config(config)
        train_config(config)
    except (ValueError, TypeError, OverflowError) as exc:
        message = str(exc)
        key = message.split(" ", 1)[0]
        raise FieldError(key if key in config["sae"] or key in config["train"] else "", message) from None


def config_problem(config: dict[str, Any] | None) -> str | None:
    """What the trainer refuses in a stored run config (None when it accepts it): such a run re-fails on resume."""
    try:
        check_config({"sae": dict((config or {}).get("sae") or {}), "train": dict((config or {}).get("train") or {})})
    except ValueError as exc:
        return str(exc)
    return None


def config_default(key: str) -> Any:
    """The trainer's default for an SAE or training config key (shown in forms)."""
    import dataclasses

    from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig

    if key in TRAIN_DEFAULTS:
        return TRAIN_DEFAULTS[key]
    for cls in (SAEConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name == key:
                return f.default
    raise KeyError(key)


def default_name(architecture: str, hook: str | None, d_sae: int) -> str:
    """A short name that tells runs apart: architecture, layer, width and a random suffix (`topk-L0-4k-a3f`)."""
    layer = re.search(r"\d+", hook or "")
    width = f"{d_sae // 1024}k" if d_sae % 1024 == 0 else (f"{d_sae / 1000:g}k" if d_sae >= 1000 else str(d_sae))
    base = "-".join([architecture, f"L{layer.group()}" if layer else "acts", width])
    while True:
        name = f"{base}-{secrets.token_hex(2)[:3]}"
        if Training.get_or_none(Training.name == name) is None:
            return name


def new_training(
    studio: Studio,
    activations_ref: str | int,
    name: str | None = None,
    hook: str | None = None,
    template: str | int | None = None,
    tags: str = "",
    template_config: dict[str, Any] | None = None,
    **options: Any,
) -> JobSpec:
    """Create the Training row on an activation set and describe the training job."""
    aset = resolve(ActivationSet, activations_ref)
    if aset.status != "ready":
        raise ValueError(f"activation set '{aset.name}' is {aset.status}; it must be ready")
    hooks = list(aset.hooks or [])
    hook = hook or (hooks[0] if hooks else None)
    if hooks and hook not in hooks:
        raise ValueError(f"activation set '{aset.name}' has no hook {hook!r}; it has {', '.join(hooks)}")
    if not aset.d_in:
        raise ValueError(f"activation set '{aset.name}' does not record its width (d_in)")
    tpl = template_config
    if template is not None:
        tpl = dict(resolve(TrainingTemplate, template).config)
    config = training_config(aset.d_in, template=tpl, **options)
    sae = config["sae"]
    with database.atomic():
        training = create_training(
            studio,
            config,
            name=_name(name) or default_name(sae["architecture"], hook, sae["d_sae"]),
            activation_set=aset,
            model=aset.model,
            tokenization=aset.tokenization,
            hook_name=hook,
            tags=tags,
        )
    return train_spec(training, resume=False)


def create_training(studio: Studio, config: dict[str, Any], **fields: Any) -> Training:
    """A pending Training row for `config` (plus `fields`), with its folder under the studio's saes/."""
    sae = config["sae"]
    return create_pending(
        studio,
        Training,
        "saes",
        architecture=sae["architecture"],
        d_in=sae["d_in"],
        d_sae=sae["d_sae"],
        config=config,
        total_tokens=int(config["train"]["total_tokens"]),
        **fields,
    )


def _name(name: str | None) -> str | None:
    """`name` if it is free (None when not given)."""
    if name and Training.get_or_none(Training.name == name) is not None:
        raise FieldError("name", f"the name {name!r} is taken; choose another with --name")
    return name or None


def train_spec(training: Training, resume: bool) -> JobSpec:
    """The job that trains (or resumes) `training`."""
    aset = training.activation_set
    model = training.model
    tok = training.tokenization
    metadata = {**run_metadata(model, tok, aset.context_size if aset else None), "hook_name": training.hook_name}
    params = {
        "sae": training.config["sae"],
        "train": training.config["train"],
        "source": {"type": "activations", "dir": aset.path if aset else None, "hook": training.hook_name},
        "out_dir": training.path,
        "resume": resume,
        "metadata": metadata,
        "eval": eval_params(model, tok),
    }
    verb = "Resume" if resume else "Train"
    return JobSpec("train", params, f"{verb} {training.name}", training)


def run_metadata(model: LanguageModel | None, tok: Tokenization | None, context_size: int | None) -> dict[str, Any]:
    """Where a run's activations come from, as recorded with the trained SAE."""
    return {
        "model_name": model.reference if model else None,
        "context_size": context_size,
        "prepend_bos": tok.prepend_bos if tok else True,
        "dataset_path": tok.dataset.source if tok else None,
    }


def eval_params(model: LanguageModel | None, tok: Tokenization | None) -> dict[str, Any]:
    """The model and tokenization an SAE evaluation runs through (none where the run has none)."""
    return {
        "model_path": model.path if model else None,
        "model_dtype": model.dtype if model else None,
        "tokenization_dir": tok.path if tok else None,
        "is_causal_lm": bool(model.is_causal_lm) if model else False,
    }


def resume_training(ref: str | int) -> JobSpec:
    """Continue a cancelled, paused, interrupted or failed training from its last checkpoint."""
    training = resolve(Training, ref)
    if training.status in ("running",):
        raise ValueError(f"training '{training.name}' is already running")
    if training.status in ("ready", "completed"):
        raise ValueError(f"training '{training.name}' has finished; clone it to train further")
    if training.origin != "trained":
        raise ValueError(f"'{training.name}' is an imported SAE, not a training run")
    problem = config_problem(training.config)
    if problem:
        raise ValueError(
            f"'{training.name}' cannot resume: its configuration is refused ({problem}); clone it with changes"
        )
    return train_spec(training, resume=True)


def clone_training(studio: Studio, ref: str | int, name: str | None = None, **changes: Any) -> JobSpec:
    """A new run with the same configuration (optionally changed)."""
    training = resolve(Training, ref)
    if training.activation_set is None:
        raise ValueError(f"'{training.name}' has no activation set to train on")
    config = training.config
    sae = dict(config["sae"])
    options: dict[str, Any] = {
        "architecture": changes.pop("architecture", sae.get("architecture")),
        "k": changes.pop("k", sae.get("k")),
        "l1_coefficient": changes.pop("l1_coefficient", sae.get("l1_coefficient")),
        "d_sae": changes.pop("d_sae", sae.get("d_sae")),
    }
    template = {"sae": {k: v for k, v in sae.items() if k in SAE_KEYS}, "train": dict(config["train"])}
    return new_training(
        studio,
        training.activation_set.id,
        name=name,
        hook=training.hook_name,
        template_config=template,
        tags=training.tags,
        **options,
        **changes,
    )


def evaluate_training(
    ref: str | int, tokens: int | None = None, device: str | None = None, tokenization: str | int | None = None
) -> JobSpec:
    """The job that re-evaluates a finished SAE (held-out reconstruction, CE loss) into `Training.evaluation`."""
    training = resolve(Training, ref)
    if training.status not in ("ready", "completed"):
        raise ValueError(f"training '{training.name}' is {training.status}; only a finished SAE can be evaluated")
    if tokens is not None and tokens <= 0:
        raise ValueError(f"--tokens must be positive, got {tokens}")
    aset = training.activation_set
    tok = resolve(Tokenization, tokenization) if tokenization is not None else training.tokenization
    model = training.model or (tok.model if tok is not None else None)
    if tok is not None and model is not None and tok.model is not None and tok.model.id != model.id:
        raise ValueError(f"tokenization '{tok.name}' was made for model '{tok.model.name}', not '{model.name}'")
    if aset is None and (tok is None or model is None):
        raise ValueError(
            f"'{training.name}' has no activation set to evaluate on; "
            "give a tokenization of its model with --tokenization"
        )
    if aset is None and not training.hook_name:
        raise ValueError(f"'{training.name}' does not say which hook point it reads; import it again with --hook")
    params = {
        "training_id": training.id,
        "sae_dir": training.path,
        "hook": training.hook_name,
        "tokens": tokens,
        "device": device or (training.config.get("train") or {}).get("device") or "auto",
        "source": {
            "dir": aset.path if aset else None,
            "hook": training.hook_name,
            "held_out": training.origin == "trained",
        },
        "eval": {**eval_params(model, tok), "context_size": tok.context_size if tok else None},
        "previous": training.evaluation or {},
    }
    return JobSpec("sae.eval", params, f"Evaluate {training.name}", None)
