"""SAE trainings: configure a run on an activation set, resume it, clone it, evaluate it."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import (
    ActivationSet,
    LanguageModel,
    Tokenization,
    Training,
    TrainingTemplate,
    database,
    refuse_id_like_name,
)
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.kinds.sae import EvalSource, SAEEvalParams
from mistudio_tui.jobs.kinds.train import ActivationsSource, EvalModel, TrainParams
from mistudio_tui.ml.sae.config import (
    ARCHITECTURE_NAMES,
    SHOWN_ARCHITECTURES,
    SAEConfig,
    TrainConfig,
)

# re-exported: the forms and commands name architectures through this module
from mistudio_tui.ml.sae.config import K_ARCHITECTURES as K_ARCHITECTURES
from mistudio_tui.ml.sae.config import architecture_id as architecture_id
from mistudio_tui.ml.sae.config import shown_architecture as shown_architecture
from mistudio_tui.services.spec import FieldError, JobSpec, create_pending
from mistudio_tui.studio import Studio

# The architectures as people type and read them (CLI --arch, form choices); rows hold the internal names
# (ARCHITECTURE_IDS), which the services also accept.
ARCHITECTURES = SHOWN_ARCHITECTURES
ARCHITECTURE_IDS = tuple(ARCHITECTURE_NAMES)
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
    import dataclasses

    from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig

    if key in TRAIN_DEFAULTS:
        return TRAIN_DEFAULTS[key]
    for cls in (SAEConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name == key:
                return f.default
    raise KeyError(key)


def default_name(architecture: str, hook: str | None, d_sae: int, kind: str | None = None) -> str:
    """A short name that tells runs apart: architecture, layer, width and a random suffix (`topk-L0-4k-a3f`);
    a transcoder's says so (`topk-transcoder-L0-4k-a3f`)."""
    architecture = shown_architecture(architecture)
    layer = re.search(r"\d+", hook or "")
    width = f"{d_sae // 1024}k" if d_sae % 1024 == 0 else (f"{d_sae / 1000:g}k" if d_sae >= 1000 else str(d_sae))
    base = "-".join([architecture, *([kind] if kind else []), f"L{layer.group()}" if layer else "acts", width])
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
    transcode: str | None = None,
    skip: bool = False,
    **options: Any,
) -> JobSpec[TrainParams]:
    """Create the Training row on an activation set and describe the training job; with `transcode`
    ('IN_HOOK:OUT_HOOK') a transcoder that reads one hook of the set and writes another (`skip`: with W_skip)."""
    aset = resolve(ActivationSet, activations_ref)
    if aset.status != "ready":
        raise ValueError(f"activation set '{aset.name}' is {aset.status}; it must be ready")
    hooks = list(aset.hooks or [])
    hook_out = None
    if transcode is not None:
        if hook:
            raise ValueError("give either --hook or --transcode IN_HOOK:OUT_HOOK, not both")
        hook, hook_out = _transcoder_hooks(transcode)
    elif skip:
        raise ValueError("--skip adds a skip connection to a transcoder: give --transcode IN_HOOK:OUT_HOOK too")
    hook = hook or (hooks[0] if hooks else None)
    for wanted in (hook, hook_out):
        if hooks and wanted is not None and wanted not in hooks:
            raise ValueError(f"activation set '{aset.name}' has no hook {wanted!r}; it has {', '.join(hooks)}")
    if not aset.d_in:
        raise ValueError(f"activation set '{aset.name}' does not record its width (d_in)")
    tpl = template_config
    if template is not None:
        tpl = dict(resolve(TrainingTemplate, template).config)
    config = training_config(_hook_width(aset, hook), template=tpl, **options)
    sae = config["sae"]
    kind = None
    if hook_out is not None:
        sae.update(d_out=_hook_width(aset, hook_out), skip_connection=bool(skip), apply_b_dec_to_input=False)
        config["hook_name_out"] = hook_out
        kind = "skip-transcoder" if skip else "transcoder"
    with database.atomic():
        training = create_training(
            studio,
            config,
            name=_name(name) or default_name(sae["architecture"], hook, sae["d_sae"], kind),
            activation_set=aset,
            model=aset.model,
            tokenization=aset.tokenization,
            hook_name=hook,
            tags=tags,
        )
    return train_spec(training, resume=False)


def _transcoder_hooks(text: str) -> tuple[str, str]:
    """('IN_HOOK', 'OUT_HOOK') from 'IN_HOOK:OUT_HOOK'."""
    hook_in, sep, hook_out = text.partition(":")
    if not (sep and hook_in.strip() and hook_out.strip()):
        raise ValueError(
            f"--transcode wants IN_HOOK:OUT_HOOK (e.g. blocks.3.hook_resid_mid:blocks.3.hook_mlp_out), got {text!r}"
        )
    if hook_in.strip() == hook_out.strip():
        raise ValueError(f"--transcode reads one hook and writes another; {hook_in.strip()!r} is both (train an SAE)")
    return hook_in.strip(), hook_out.strip()


def _hook_width(aset: ActivationSet, hook: str | None) -> int:
    """The width of one hook of an activation set (its per-hook record where the widths differ)."""
    by_hook = (aset.manifest or {}).get("d_in_by_hook") or {}
    width = by_hook.get(hook) or aset.d_in
    if width is None:
        raise ValueError(f"activation set '{aset.name}' does not record its width (d_in)")
    return int(width)


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
    if name:
        refuse_id_like_name(name)
    if name and Training.get_or_none(Training.name == name) is not None:
        raise FieldError("name", f"the name {name!r} is taken; choose another with --name")
    return name or None


def train_spec(training: Training, resume: bool, config: dict[str, Any] | None = None) -> JobSpec[TrainParams]:
    """The job that trains (or resumes) `training` (with `config` instead of the row's)."""
    config = config or training.config
    aset = training.activation_set
    model = training.model
    tok = training.tokenization
    metadata = {**run_metadata(model, tok, aset.context_size if aset else None), "hook_name": training.hook_name}
    hook_out = training.config.get("hook_name_out")
    if hook_out:  # a transcoder: rows are [input hook | output hook]
        metadata["hook_name_out"] = hook_out
    sae, train = checked_configs(config)
    params = TrainParams(
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


def eval_params(model: LanguageModel | None, tok: Tokenization | None, **more: Any) -> EvalModel:
    """The model and tokenization an SAE evaluation runs through (none where the run has none)."""
    return EvalModel(
        model_path=model.path if model else None,
        model_dtype=model.dtype if model else None,
        tokenization_dir=Path(tok.path) if tok and tok.path else None,
        is_causal_lm=bool(model.is_causal_lm) if model else False,
        **more,
    )


def resume_training(ref: str | int, total_tokens: int | None = None) -> JobSpec[TrainParams]:
    """Continue a cancelled, paused, interrupted or failed training from its last checkpoint, optionally with a
    new token budget (see `extended_config`); the run's row takes the new budget when the job starts."""
    training = resolve(Training, ref)
    if training.status in ("running",):
        raise ValueError(f"training '{training.name}' is already running")
    if training.status in RunState.USABLE:
        raise ValueError(f"training '{training.name}' has finished; clone it to train further")
    if training.origin != "trained":
        raise ValueError(f"'{training.name}' is an imported SAE, not a training run")
    problem = config_problem(training.config)
    if problem:
        raise ValueError(
            f"'{training.name}' cannot resume: its configuration is refused ({problem}); clone it with changes"
        )
    config = training.config if total_tokens is None else extended_config(training, total_tokens)
    return train_spec(training, resume=True, config=config)


def extended_config(training: Training, total_tokens: int) -> dict[str, Any]:
    """`training`'s config with a new token budget for a resume.

    The learning-rate schedule is recomputed over the new total (its decay starts at the same fraction of the new
    run, so extending a run that was already decaying raises the rate back to the peak until the new decay point),
    but the lr and sparsity-coefficient warmups keep the lengths the run started with, so they never restart.
    """
    from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step
    from mistudio_tui.ml.sae.config import TrainConfig, resolve_optimizer
    from mistudio_tui.ml.sae.schedule import LRSchedule, sparsity_warmup_steps

    train = dict(training.config["train"])
    old = TrainConfig.from_dict(train)
    arch = architecture_id(training.config["sae"].get("architecture", "topk"))
    if total_tokens <= 0:
        raise ValueError(f"--tokens must be positive, got {total_tokens}")
    step = latest_checkpoint_step(Path(training.path)) or 0
    trained = min(step * old.batch_size, old.total_tokens)
    if total_tokens <= trained:
        raise ValueError(
            f"--tokens {total_tokens:,} is not more than the {trained:,} tokens run '{training.name}' has already "
            "trained; give a larger budget"
        )
    train["lr_warmup_steps"] = LRSchedule.from_config(old, 1.0, resolve_optimizer(old.optimizer, arch)).warmup_steps
    train["sparsity_warmup_steps"] = sparsity_warmup_steps(old)
    train["total_tokens"] = int(total_tokens)
    return {**training.config, "train": train}


def clone_training(studio: Studio, ref: str | int, name: str | None = None, **changes: Any) -> JobSpec[TrainParams]:
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
    hook_out = config.get("hook_name_out")
    if hook_out:  # a transcoder stays one, between the same hooks
        options.update(transcode=f"{training.hook_name}:{hook_out}", skip=bool(sae.get("skip_connection")))
        template["sae"].pop("apply_b_dec_to_input", None)
    return new_training(
        studio,
        training.activation_set.id,
        name=name,
        hook=None if hook_out else training.hook_name,
        template_config=template,
        tags=training.tags,
        **options,
        **changes,
    )


def evaluate_training(
    ref: str | int,
    tokens: int | None = None,
    device: str | None = None,
    tokenization: str | int | None = None,
    ground_truth: str | None = None,
) -> JobSpec[SAEEvalParams]:
    """The job that re-evaluates a finished SAE (held-out reconstruction, CE loss) into `Training.evaluation`.

    With `ground_truth` (or a synthetic activation set's own file) it also scores the decoder against the true
    features.
    """
    training = resolve(Training, ref)
    if training.status not in RunState.USABLE:
        raise ValueError(f"training '{training.name}' is {training.status}; only a finished SAE can be evaluated")
    aset = training.activation_set
    truth = ground_truth_file(training, ground_truth)
    tok = resolve(Tokenization, tokenization) if tokenization is not None else training.tokenization
    model = training.model or (tok.model if tok is not None else None)
    if tok is not None and model is not None and tok.model is not None and tok.model.id != model.id:
        raise ValueError(f"tokenization '{tok.name}' was made for model '{tok.model.name}', not '{model.name}'")
    if aset is None and (tok is None or model is None) and truth is None:
        raise ValueError(
            f"'{training.name}' has no activation set to evaluate on; "
            "give a tokenization of its model with --tokenization"
        )
    if aset is None and not training.hook_name and truth is None:
        raise ValueError(f"'{training.name}' does not say which hook point it reads; import it again with --hook")
    params = SAEEvalParams(
        training_id=training.id,
        sae_dir=Path(training.path),
        hook=training.hook_name,
        tokens=tokens,
        device=device or (training.config.get("train") or {}).get("device") or "auto",
        source=EvalSource(
            dir=Path(aset.path) if aset and aset.path else None,
            hook=training.hook_name,
            hook_out=(training.config or {}).get("hook_name_out"),  # a transcoder's target hook
            held_out=training.origin == "trained",
        ),
        eval=eval_params(model, tok, context_size=tok.context_size if tok else None),
        previous=training.evaluation or {},
        ground_truth=truth,
    )
    return JobSpec("sae.eval", params, f"Evaluate {training.name}", None)


def ground_truth_file(training: Training, given: str | None) -> Path | None:
    """The checked true-features file to score `training` against: `given`, else its synthetic set's own."""
    from mistudio_tui.ml.sae.ground_truth_file import GROUND_TRUTH_FILE, ground_truth_shape

    if given is None:
        aset = training.activation_set
        own = Path(aset.path) / GROUND_TRUTH_FILE if aset is not None and aset.path else None
        if own is None or not own.is_file():
            return None
        path = own
    else:
        path = Path(given).expanduser().resolve()
    ground_truth_shape(path, training.d_in)
    return path


def ground_truth_line(evaluation: dict[str, Any] | None) -> str | None:
    """One line of the stored ground-truth scores of an evaluation, or None when it has none."""
    scores = (evaluation or {}).get("ground_truth")
    if not isinstance(scores, dict) or "mcc" not in scores:
        return None
    return (
        f"MCC {scores['mcc']:.3f} · recovered {scores['recovered']:.1%} of {scores['features']:,} true features "
        f"(|cos| ≥ 0.9) · mean max |cos| {scores['mean_max_cosine']:.3f} · {scores['latents']:,} latents"
    )
