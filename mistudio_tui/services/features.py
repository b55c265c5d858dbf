"""Feature sets: extract per-feature statistics and examples of an SAE over a tokenization."""

from __future__ import annotations

from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import FeatureSet, Tokenization, Training, database
from mistudio_tui.db.states import RunState
from mistudio_tui.services.spec import JobSpec, create_pending
from mistudio_tui.studio import Studio

EXTRACTION_DEFAULTS: dict[str, Any] = {
    "n_tokens": 100_000,
    "top_k": 20,
    "n_quantiles": 5,
    "per_quantile": 4,
    "context_before": 12,
    "context_after": 4,
    "exclude_bos": True,
    "exclude_special": True,
    "dead_density": 1e-6,
    "batch_size": 8,
    "device": "auto",
}


def extract_features(
    studio: Studio,
    training_ref: str | int,
    tokenization_ref: str | int | None = None,
    n_tokens: int | None = None,
    name: str | None = None,
    **options: Any,
) -> JobSpec:
    """Create the FeatureSet row and describe the extraction job (model + SAE over the tokenization)."""
    training = resolve(Training, training_ref)
    if training.status not in RunState.USABLE:
        raise ValueError(f"training '{training.name}' is {training.status}; features need a finished SAE")
    tokenization = resolve(Tokenization, tokenization_ref) if tokenization_ref is not None else training.tokenization
    if tokenization is None:
        raise ValueError(
            f"'{training.name}' has no tokenization to run on (e.g. trained on imported activations); "
            "give one with --tokenization"
        )
    if tokenization.status != "ready":
        raise ValueError(f"tokenization '{tokenization.name}' is {tokenization.status}; it must be ready")
    model = training.model or (tokenization.model if tokenization.model else None)
    if model is None:
        raise ValueError(f"'{training.name}' has no model to compute activations with")
    config = dict(EXTRACTION_DEFAULTS)
    config.update({k: v for k, v in options.items() if v is not None})
    if n_tokens is not None:
        config["n_tokens"] = int(n_tokens)
    if int(config["n_tokens"]) <= 0:
        raise ValueError("the number of tokens must be positive")
    check_extraction_config(config)
    default = f"{training.name}-features"
    with database.atomic():
        fset = create_pending(
            studio,
            FeatureSet,
            "features",
            name=new_name(FeatureSet, name, default),
            training=training,
            tokenization=tokenization,
            d_sae=training.d_sae or 0,
            config=config,
        )
    params = dict(config)
    params.update(
        sae_dir=training.path,
        hook=training.hook_name,
        model_path=model.path,
        model_dtype=model.dtype,
        is_causal_lm=bool(model.is_causal_lm),
        tokenization_dir=tokenization.path,
        out_dir=fset.path,
    )
    return JobSpec("features.extract", params, f"Features of {training.name}", fset)


def check_extraction_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first extraction option that is out of range."""
    for key in ("top_k", "n_quantiles", "per_quantile", "batch_size"):
        if int(config[key]) < 1:
            raise ValueError(f"extraction option {key} must be at least 1, got {config[key]}")
    for key in ("context_before", "context_after"):
        if int(config[key]) < 0:
            raise ValueError(f"extraction option {key} must be zero or more tokens, got {config[key]}")
    if not 0.0 <= float(config["dead_density"]) < 1.0:
        raise ValueError(f"extraction option dead_density must be in [0, 1), got {config['dead_density']}")


def not_firing(n_tokens: int) -> str:
    """What a tested text says when the feature is zero on every one of its tokens."""
    return f"the feature does not fire on this text (0 on all {n_tokens} tokens)"
