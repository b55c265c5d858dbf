"""SAE training groups: several hooks (and/or configs) trained from one forward pass or one activation set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import resolve, unique_name
from mistudio_tui.db.models import (
    ActivationSet,
    LanguageModel,
    Tokenization,
    Training,
    TrainingTemplate,
    database,
    refuse_id_like_name,
)
from mistudio_tui.db.ownership import slug
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.jobs.kinds.train import ActivationsSource, GroupMember, MultiTrainParams, StreamSource
from mistudio_tui.jobs.kinds.train_runs import create_training, eval_params, run_metadata, training_config
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio

STREAM_KEYS = ("buffer_tokens", "batch_size", "exclude_bos", "exclude_special")
RESUMABLE = (RunState.PAUSED, RunState.CANCELLED, RunState.INTERRUPTED, RunState.FAILED, RunState.RUNNING)


def parse_hooks(text: str | list[str]) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c']; at least one hook, no empty names."""
    hooks = [h.strip() for h in text.split(",")] if isinstance(text, str) else [str(h).strip() for h in text]
    if not hooks or any(not h for h in hooks):
        raise ValueError(f"--hooks: expected comma-separated hook names, got {text!r}")
    return hooks


VARIANT_KEYS = {"k": "k", "l1": "l1_coefficient", "expansion": "expansion", "d_sae": "d_sae", "arch": "architecture"}


def parse_variants(text: str) -> list[dict[str, Any]]:
    """'k=16;k=64,expansion=16' -> [{'k': 16}, {'k': 64, 'expansion': 16}]: one SAE per variant on every hook."""
    variants = []
    for part in text.split(";"):
        variant: dict[str, Any] = {}
        for item in filter(None, (x.strip() for x in part.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in VARIANT_KEYS or not value.strip():
                raise ValueError(
                    f"--variants: {item!r} is not KEY=VALUE with KEY one of {', '.join(VARIANT_KEYS)} "
                    "(variants are separated by ';', settings by ',')"
                )
            value = value.strip()
            if key.strip() == "arch":
                variant["architecture"] = value
                continue
            try:
                variant[VARIANT_KEYS[key.strip()]] = float(value) if key.strip() == "l1" else int(value)
            except ValueError:
                raise ValueError(f"--variants: {key.strip()}={value!r} is not a number") from None
        if not variant:
            raise ValueError(f"--variants: empty variant in {text!r}")
        variants.append(variant)
    return variants


def new_multi_training(
    studio: Studio,
    hooks: list[str],
    activations_ref: str | int | None = None,
    model_ref: str | int | None = None,
    tokenization_ref: str | int | None = None,
    configs: list[dict[str, Any]] | None = None,
    group: str | None = None,
    name: str | None = None,
    template: str | int | None = None,
    tags: str = "",
    stream: dict[str, Any] | None = None,
    **options: Any,
) -> JobSpec[MultiTrainParams]:
    """Create one Training row per (hook, config) with a shared group name, and the job that trains them all.

    `configs` lists per-SAE overrides (e.g. [{'k': 16}, {'k': 64}]) applied on top of `options` for every hook;
    without it each hook gets one SAE with `options`. The source is an activation set holding every hook, or a
    model and a tokenization streamed with no disk cache.
    """
    if activations_ref is not None and (model_ref is not None or tokenization_ref is not None):
        raise ValueError("give either --activations or --model with --tokenization, not both")
    if (model_ref is None) != (tokenization_ref is None):
        raise ValueError("streaming from the model needs both --model and --tokenization")
    if activations_ref is None and model_ref is None:
        raise ValueError("give --activations A or --model M --tokenization T")
    hooks = parse_hooks(hooks)
    tpl = dict(resolve(TrainingTemplate, template).config) if template is not None else None
    variants = configs or [{}]
    aset, model, tokenization = _source_rows(activations_ref, model_ref, tokenization_ref, hooks)
    stream = {k: v for k, v in (stream or {}).items() if k in STREAM_KEYS and v is not None}
    if aset is not None:
        d_in, where = aset.d_in, f"activation set '{aset.name}'"
    else:
        assert model is not None and tokenization is not None  # _source_rows gives a set or both of these
        d_in, where = model.d_model, f"model '{model.name}'"
        _stream_source(model, tokenization, stream)  # its settings checked before any row exists
    if not d_in:
        raise ValueError(f"{where} does not record its width (d_in)")
    planned = []
    for hook in hooks:
        for variant in variants:
            config = training_config(int(d_in), template=tpl, **{**options, **variant})
            planned.append((hook, variant, config))
    first = planned[0][2]
    for _, _, config in planned[1:]:
        for key in sorted(set(config["train"]) | set(first["train"])):
            if config["train"].get(key) != first["train"].get(key):
                raise ValueError(f"every SAE of a group must share {key}; vary SAE settings (k, width, …) instead")
    group_name = _group_name(group or name, hooks, model or (aset.model if aset is not None else None))
    with database.atomic():
        trainings = []
        for hook, variant, config in planned:
            suffix = "-".join(f"{k}{v}" for k, v in sorted(variant.items())) if len(variants) > 1 else ""
            default = f"{group_name}-{slug(hook)}" + (f"-{slug(suffix)}" if suffix else "")
            if stream:
                config["stream"] = stream
            training = create_training(
                studio.paths,
                config,
                name=unique_name(Training, default),
                activation_set=aset,
                model=model or (aset.model if aset is not None else None),
                tokenization=tokenization or (aset.tokenization if aset is not None else None),
                hook_name=hook,
                group_name=group_name,
                tags=tags,
            )
            trainings.append(training)
    return multi_train_spec(trainings, resume=False)


def _source_rows(
    activations_ref: str | int | None,
    model_ref: str | int | None,
    tokenization_ref: str | int | None,
    hooks: list[str],
) -> tuple[ActivationSet | None, LanguageModel | None, Tokenization | None]:
    if activations_ref is not None:
        aset = resolve(ActivationSet, activations_ref)
        if aset.status != "ready":
            raise ValueError(f"activation set '{aset.name}' is {aset.status}; it must be ready")
        missing = [h for h in hooks if h not in (aset.hooks or [])]
        if missing:
            raise ValueError(
                f"activation set '{aset.name}' has no hook {', '.join(missing)}; it has {', '.join(aset.hooks or [])}"
            )
        return aset, None, None
    if model_ref is None or tokenization_ref is None:
        raise ValueError("streaming from the model needs both --model and --tokenization")
    model = resolve(LanguageModel, model_ref)
    tokenization = resolve(Tokenization, tokenization_ref)
    for row, what in ((model, "model"), (tokenization, "tokenization")):
        if row.status != "ready":
            raise ValueError(f"{what} '{row.name}' is {row.status}; it must be ready")
    from mistudio_tui.services.models import _check_hooks

    _check_hooks(model, tuple(hooks))
    return None, model, tokenization


def _group_name(requested: str | None, hooks: list[str], model: LanguageModel | None) -> str:
    if requested:
        refuse_id_like_name(requested)  # `train --resume GROUP` reads digits as a training id
        if Training.select().where(Training.group_name == requested).exists():
            raise ValueError(f"the group name {requested!r} is taken; choose another with --name")
        return requested
    base = f"{model.name if model else 'sae'}-{len(hooks)}hooks"
    candidate, n = base, 2
    while Training.select().where(Training.group_name == candidate).exists():
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _member_hook(training: Training) -> str:
    if not training.hook_name:
        raise ValueError(f"training '{training.name}' records no hook, so it cannot train in a group")
    return training.hook_name


def multi_train_spec(trainings: list[Training], resume: bool) -> JobSpec[MultiTrainParams]:
    """The job that trains (or resumes) every run of a group in lockstep."""
    first = trainings[0]
    aset, model, tok = first.activation_set, first.model, first.tokenization
    distinct_hooks = len({x.hook_name for x in trainings}) == len(trainings)
    members = tuple(
        GroupMember(
            training_id=t.id,
            label=t.hook_name if distinct_hooks else t.name,
            hook=_member_hook(t),
            sae=SAEConfig.from_dict(dict(t.config["sae"])),
            out_dir=Path(t.path),
        )
        for t in trainings
    )
    source: ActivationsSource | StreamSource
    if aset is not None:
        source = ActivationsSource(dir=Path(aset.path) if aset.path else None)
    elif model is None or tok is None:
        raise ValueError(
            f"group '{first.group_name}' cannot run: its activation set, or its model and tokenization, were deleted"
        )
    else:
        source = _stream_source(model, tok, first.config.get("stream") or {})
    params = MultiTrainParams(
        members=members,
        train=TrainConfig.from_dict(dict(first.config["train"])),
        source=source,
        resume=resume,
        metadata=run_metadata(model, tok, aset.context_size if aset else (tok.context_size if tok else None)),
        eval=eval_params(model, tok),
    )
    verb = "Resume" if resume else "Train"
    return JobSpec("train.multi", params, f"{verb} {first.group_name} ({len(trainings)} SAEs)", first)


def _stream_source(model: LanguageModel, tok: Tokenization, settings: dict[str, Any]) -> StreamSource:
    return StreamSource(model_path=model.path, model_dtype=model.dtype, tokenization_dir=Path(tok.path), **settings)


def resume_group(group_name: str) -> JobSpec[MultiTrainParams]:
    """Continue every unfinished run of a group from its checkpoints (one job, in lockstep)."""
    trainings = list(Training.select().where(Training.group_name == group_name).order_by(Training.id))
    if not trainings:
        raise ValueError(f"no training group named {group_name!r}")
    if any(t.job is not None and t.job.status in JobState.ACTIVE for t in trainings):
        raise ValueError(f"training group {group_name!r} is already running")
    todo = [t for t in trainings if t.status in RESUMABLE]
    if not todo:
        raise ValueError(f"every run of training group {group_name!r} has finished; clone one to train further")
    return multi_train_spec(todo, resume=True)
