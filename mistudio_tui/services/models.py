"""Models and activation sets: register a model (hub or folder), extract or import activations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import ActivationSet, LanguageModel, Tokenization, database
from mistudio_tui.db.ownership import create_owned_folder, create_pending, slug
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.kinds.activations import ExtractParams, ImportParams, SynthParams, check_settings
from mistudio_tui.jobs.kinds.models import DTYPES as DTYPES  # the form's and CLI's choices
from mistudio_tui.jobs.kinds.models import ModelAddParams
from mistudio_tui.services.extraction_templates import EXTRACTION_DEFAULTS, template_config
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio


def add_model(
    studio: Studio,
    source: str,
    name: str | None = None,
    revision: str | None = None,
    dtype: str = "float32",
    quantization: str | None = None,
    trust_remote_code: bool = False,
    hub: bool | None = None,
) -> JobSpec[ModelAddParams]:
    """Create the LanguageModel row and describe the job that downloads (hub) and inspects it."""
    source = source.strip()
    if not source:
        raise ValueError("model source: give a local folder or a hub id like 'gpt2' or 'EleutherAI/pythia-70m'")
    path = Path(source).expanduser()
    is_hub = hub if hub is not None else not path.exists()
    params = ModelAddParams(  # checked first; the resolved folder is filled in below
        source=source,
        source_type="hub" if is_hub else "local",
        path=path,
        revision=revision,
        dtype=dtype,
        quantization=quantization,
        trust_remote_code=trust_remote_code,
    )
    if not is_hub:
        if not path.is_dir():
            raise FileNotFoundError(f"model folder not found: {path}")
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json: not a transformers model folder")
        source = str(path.resolve())
    elif source.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model folder not found: {path}")
    base = name or source.rstrip("/").split("/")[-1]
    with database.atomic():
        model = LanguageModel.create(
            name=new_name(LanguageModel, name, slug(base)),
            source_type="hub" if is_hub else "local",
            source=source,
            revision=revision,
            dtype=dtype,
            quantization=quantization,
            trust_remote_code=trust_remote_code,
            status="pending",
        )
        if is_hub:
            model.path = str(create_owned_folder(model, studio.paths.dir("models"), f"{model.id}-{slug(model.name)}"))
        else:
            model.path = source
        model.save()
    params = replace(params, source=source, path=Path(model.path))
    title = f"Download {model.name}" if is_hub else f"Inspect {model.name}"
    return JobSpec("model.add", params, title, model)


def extract_activations(
    studio: Studio,
    model_ref: str | int,
    tokenization_ref: str | int,
    hooks: list[str] | None = None,
    n_tokens: int | None = None,
    name: str | None = None,
    template: str | int | None = None,
    **overrides: Any,
) -> JobSpec[ExtractParams]:
    """Create the ActivationSet row and describe the extraction job (template values, then overrides)."""
    model = resolve(LanguageModel, model_ref)
    tokenization = resolve(Tokenization, tokenization_ref)
    for row, what in ((model, "model"), (tokenization, "tokenization")):
        if row.status != "ready":
            raise ValueError(f"{what} '{row.name}' is {row.status}; it must be ready")
    config = extraction_settings(template, hooks=hooks, n_tokens=n_tokens, **overrides)
    params = ExtractParams(  # checked before the row and its folder exist; the folder is filled in below
        **config,
        model_path=model.path,
        model_dtype=model.dtype,
        quantization=model.quantization,
        trust_remote_code=model.trust_remote_code,
        tokenization_dir=Path(tokenization.path),
        out_dir=Path(),
    )
    _check_hooks(model, params.hooks)
    hook_label = config["hooks"][0].replace("blocks.", "L").replace(".hook_", "-")
    default = f"{model.name}-{hook_label}-{_short(int(config['n_tokens']))}"
    with database.atomic():
        aset = create_pending(
            studio.paths,
            ActivationSet,
            "activations",
            name=new_name(ActivationSet, name, slug(default)),
            model=model,
            tokenization=tokenization,
            hooks=config["hooks"],
            d_in=model.d_model,
            dtype=config["store_dtype"],
            context_size=tokenization.context_size,
        )
    return JobSpec("activations.extract", replace(params, out_dir=Path(aset.path)), f"Extract {aset.name}", aset)


def extraction_settings(
    template: str | int | None = None, hooks: list[str] | None = None, n_tokens: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """The full extraction settings: defaults, then the template's, then the values given (None: not given)."""
    config = dict(EXTRACTION_DEFAULTS)
    config.update(template_config(template))
    given = {k: v for k, v in overrides.items() if v is not None}
    if hooks:
        given["hooks"] = list(hooks)
    if n_tokens is not None:
        given["n_tokens"] = n_tokens
    config.update(check_settings(given, "extraction settings"))
    return config


def resume_extraction(studio: Studio, ref: str | int) -> JobSpec[ExtractParams]:
    """Continue an interrupted, cancelled or failed extraction from its last complete shard."""
    aset = resolve(ActivationSet, ref)
    if aset.origin != "extracted":
        raise ValueError(f"activation set '{aset.name}' was imported; only extracted sets can be resumed")
    if aset.status == "ready":
        raise ValueError(f"activation set '{aset.name}' is already complete")
    if aset.status in RunState.ACTIVE:
        raise ValueError(f"activation set '{aset.name}' is {aset.status}; its job is still going")
    stored = aset.job.params if aset.job else None
    if not stored or "tokenization_dir" not in stored:
        raise ValueError(f"activation set '{aset.name}' has no extraction job to resume; extract it again")
    for row, what in ((aset.model, "model"), (aset.tokenization, "tokenization")):
        if row is None:
            raise ValueError(f"activation set '{aset.name}' cannot resume: its {what} was deleted")
        if row.status != "ready":
            raise ValueError(f"activation set '{aset.name}' cannot resume: {what} '{row.name}' is {row.status}")
    # the home may have moved since the job started
    model, tokenization = aset.model, aset.tokenization
    assert model is not None and tokenization is not None  # checked in the loop above
    params = replace(
        ExtractParams.from_json(stored),
        model_path=model.path,
        tokenization_dir=Path(tokenization.path),
        out_dir=Path(aset.path),
    )
    return JobSpec("activations.extract", params, f"Resume {aset.name}", aset)


def _check_hooks(model: LanguageModel, hooks: tuple[str, ...]) -> None:
    """Refuse TransformerLens-style names the model lacks (module paths are checked by the worker)."""
    points = (model.architecture or {}).get("hook_points", [])
    known = {h["name"] for h in points}
    if not known:
        return
    for hook in hooks:
        if hook not in known and hook.startswith("blocks."):
            layers = sorted({h["layer"] for h in points if h.get("layer") is not None})
            kinds = sorted({h["name"].rsplit(".", 1)[-1] for h in points if h["name"].startswith("blocks.")})
            span = f"{{{layers[0]}..{layers[-1]}}}" if layers else "{L}"
            raise ValueError(
                f"model '{model.name}' has no hook point {hook!r}; valid: blocks.{span}.{'|'.join(kinds)}, "
                "or a module path (see `mistudio models hooks`)"
            )


def _short(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale and n % (scale // 10 or 1) == 0:
            return f"{n / scale:g}{unit}"
    return str(n)


def import_activations(
    studio: Studio, path: str, key: str | None = None, name: str | None = None
) -> JobSpec[ImportParams]:
    """Register activations computed elsewhere (a safetensors file or a folder of shards)."""
    src = Path(path).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"activations not found: {src}")
    with database.atomic():
        aset = create_pending(
            studio.paths,
            ActivationSet,
            "activations",
            name=new_name(ActivationSet, name, slug(f"imported-{src.stem}")),
            origin="imported",
            hooks=[key] if key else [],
        )
    params = ImportParams(path=src.resolve(), key=key, out_dir=Path(aset.path))
    return JobSpec("activations.import", params, f"Import {aset.name}", aset)


def synth_activations(studio: Studio, options: dict[str, Any], name: str | None = None) -> JobSpec[SynthParams]:
    """A synthetic activation set with known true features (needs the optional sae-lens package)."""
    from mistudio_tui.ml.activations.synthetic import SAE_LENS_HINT, SynthOptions, sae_lens_available

    # a bad option is named whether or not the extra is installed; the folder is filled in below
    params = SynthParams(options=SynthOptions(**options), out_dir=Path())
    synth = params.options
    if not sae_lens_available():
        raise ModuleNotFoundError(SAE_LENS_HINT)
    default = f"synth-{_short(synth.features)}f-{synth.d_in}d-{_short(synth.tokens)}"
    with database.atomic():
        aset = create_pending(
            studio.paths, ActivationSet, "activations", name=new_name(ActivationSet, name, default), origin="synthetic"
        )
    return JobSpec("activations.synth", replace(params, out_dir=Path(aset.path)), f"Synthesize {aset.name}", aset)
