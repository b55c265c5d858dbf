"""Bring SAEs in from other tools (local folders or hub repos) and hand them out in the SAELens layout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import LanguageModel, Training, database
from mistudio_tui.db.ownership import create_pending, slug
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.kinds.sae import SAEImportParams
from mistudio_tui.services import sae_releases
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.services.staging import staged_folder
from mistudio_tui.studio import Studio

EXPORT_FILES = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors")
REQUIRED_EXPORT_FILES = ("cfg.json", "sae_weights.safetensors")
HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_repo(source: str) -> bool:
    """Whether `source` names a hub repo ("owner/name") rather than an existing local path."""
    return not Path(source).expanduser().exists() and bool(HUB_REPO_RE.match(source))


def import_sae(
    studio: Studio,
    source: str,
    name: str | None = None,
    model: str | int | None = None,
    hook: str | None = None,
    subfolder: str | None = None,
    revision: str | None = None,
    sae_id: str | None = None,
) -> JobSpec[SAEImportParams]:
    """Create an imported Training row and describe the job that reads the SAE at `source` (a folder or hub repo).

    With `sae_id`, `source` is a SAELens pretrained release, found through the installed sae-lens's catalogue.
    """
    release, single_file = None, False
    if sae_id is not None:
        if subfolder:
            raise ValueError("--subfolder does not apply to a release import: the release names the folder")
        release = sae_releases.resolve(source, sae_id)
        name = new_name(Training, name, f"{slug(source, 'sae')}-{slug(sae_id, 'sae')}")
        source, subfolder = release.repo_id, release.path
        single_file = release.layout in sae_releases.SINGLE_FILE_LAYOUTS
    hub = release is not None or is_hub_repo(source)
    if not hub:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"SAE source {source} is neither an existing folder nor a hub repo id (owner/name)"
                + ("; a SAELens release needs its SAE id too: sae import RELEASE SAE_ID" if "/" not in source else "")
            )
        if not path.is_dir():
            raise ValueError(f"SAE source {source} is a file; give the folder that holds cfg.json (or ae.pt)")
        source = str(path.resolve())
    elif revision is not None and not revision.strip():
        raise ValueError("--revision must not be empty")
    language_model = resolve(LanguageModel, model) if model is not None else None
    if language_model is not None and language_model.status != "ready":
        raise ValueError(f"model '{language_model.name}' is {language_model.status}; it must be ready")
    base = Path(subfolder).name if subfolder else Path(source.rstrip("/")).name
    with database.atomic():
        training = create_pending(
            studio.paths,
            Training,
            "saes",
            name=new_name(Training, name, f"imported-{slug(base, 'sae')}"),
            origin="imported",
            model=language_model,
            hook_name=hook,
        )
    params = SAEImportParams(
        source=source,
        hub=hub,
        subfolder=None if single_file else subfolder,
        file=subfolder if single_file else None,  # the release names one file of the repo
        revision=revision,
        hook=hook,
        model_name=language_model.reference if language_model is not None else None,
        model_d_model=language_model.d_model if language_model is not None else None,
        out_dir=Path(training.path),
        release=release.release if release is not None else None,
        sae_id=release.sae_id if release is not None else None,
        norm_scaling_factor=release.norm_scaling_factor if release is not None else None,
    )
    return JobSpec("sae.import", params, f"Import SAE {training.name}", training)


def export_sae(ref: str | int, dest: str | Path) -> Path:
    """Copy a finished SAE's SAELens files (weights already in inference form) into `dest`; returns `dest`."""
    training = resolve(Training, ref)
    if training.status not in RunState.USABLE:
        raise ValueError(f"training '{training.name}' is {training.status}; only a finished SAE can be exported")
    folder = Path(training.path)
    for file in REQUIRED_EXPORT_FILES:
        if not (folder / file).is_file():
            raise FileNotFoundError(f"training '{training.name}' has no {file} in {folder}")
    target = Path(dest).expanduser()
    if target.exists() and not target.is_dir():
        raise ValueError(f"export destination {target} is a file; give a folder")
    if target.is_dir() and any(target.iterdir()):
        raise ValueError(f"export destination {target} is not empty; give a new or empty folder")
    with staged_folder(target) as staged:
        for file in EXPORT_FILES:
            if (folder / file).is_file():
                shutil.copy2(folder / file, staged / file)
    return target
