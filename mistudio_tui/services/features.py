"""Feature sets: extract per-feature statistics and examples of an SAE over a tokenization."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import FeatureSet, Tokenization, Training, database
from mistudio_tui.db.ownership import create_pending
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.kinds.features import EXTRACTION_DEFAULTS, FeaturesParams
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio


def extract_features(
    studio: Studio,
    training_ref: str | int,
    tokenization_ref: str | int | None = None,
    n_tokens: int | None = None,
    name: str | None = None,
    **options: Any,
) -> JobSpec[FeaturesParams]:
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
    params = FeaturesParams(  # checked before the row and its folder exist; the folder is filled in below
        **config,
        sae_dir=Path(training.path),
        hook=training.hook_name,
        model_path=model.path,
        model_dtype=model.dtype,
        is_causal_lm=bool(model.is_causal_lm),
        tokenization_dir=Path(tokenization.path),
        out_dir=Path(),
    )
    default = f"{training.name}-features"
    with database.atomic():
        fset = create_pending(
            studio.paths,
            FeatureSet,
            "features",
            name=new_name(FeatureSet, name, default),
            training=training,
            tokenization=tokenization,
            d_sae=training.d_sae or 0,
            config=config,
        )
    return JobSpec("features.extract", replace(params, out_dir=Path(fset.path)), f"Features of {training.name}", fset)


def not_firing(n_tokens: int) -> str:
    """What a tested text says when the feature is zero on every one of its tokens."""
    return f"the feature does not fire on this text (0 on all {n_tokens} tokens)"
