"""SAELens's catalogue of pretrained SAE releases (its pretrained_saes.yaml), read from the installed sae-lens
package without importing it or touching the network: release + SAE id -> hub repo, folder and layout."""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CATALOGUE_FILE = "pretrained_saes.yaml"
ENABLE_HINT = (
    "SAELens release names need the sae-lens package, whose catalogue maps them to hub repos: "
    "pip install -e .[bench] (or pip install sae-lens)"
)
# SAELens's conversion function for a release -> the miStudio layout that reads its files (None: SAELens's own)
LAYOUTS: dict[str | None, str] = {
    None: "saelens",
    "gemma_2": "gemma_scope",
    "gemma_3": "gemma_scope_2",
    "llama_scope": "llama_scope",
    "dictionary_learning_1": "dictionary_learning",
    "goodfire": "torch_state",
    "deepseek_r1": "torch_state",
    "qwen_scope": "torch_state",
}
SINGLE_FILE_LAYOUTS = ("torch_state",)  # the catalogue's path is a file of the repo, not a folder


@dataclass(frozen=True)
class ReleaseSAE:
    """One SAE of a release, resolved to where its files live."""

    release: str
    sae_id: str
    repo_id: str
    path: str  # folder inside the repo (a file for SINGLE_FILE_LAYOUTS)
    model: str
    layout: str
    norm_scaling_factor: float | None = None


@dataclass(frozen=True)
class Release:
    """A named group of SAEs in one hub repo."""

    name: str
    repo_id: str
    model: str
    conversion: str | None
    saes: dict[str, str] = field(repr=False)  # SAE id -> folder in the repo
    norm_scaling_factors: dict[str, float] = field(repr=False)

    @property
    def supported(self) -> bool:
        return self.conversion in LAYOUTS

    def to_dict(self) -> dict[str, Any]:
        layout = LAYOUTS.get(self.conversion) or f"unsupported ({self.conversion})"
        return {
            "release": self.name,
            "model": self.model,
            "repo_id": self.repo_id,
            "saes": len(self.saes),
            "layout": layout,
        }


def catalogue_path() -> Path | None:
    """The installed sae-lens package's pretrained_saes.yaml (found without importing the package), or None."""
    try:
        spec = importlib.util.find_spec("sae_lens")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / CATALOGUE_FILE
    return path if path.is_file() else None


@cache
def _parse(path: Path) -> dict[str, Release]:
    import yaml

    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    releases = {}
    for name, entry in (data or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("saes"), list):
            continue
        saes = {
            str(s["id"]): str(s["path"]) for s in entry["saes"] if isinstance(s, dict) and "id" in s and "path" in s
        }
        factors = {
            str(s["id"]): float(s["norm_scaling_factor"])
            for s in entry["saes"]
            if isinstance(s, dict) and isinstance(s.get("norm_scaling_factor"), (int, float))
        }
        releases[str(name)] = Release(
            str(name),
            str(entry.get("repo_id", "")),
            str(entry.get("model", "")),
            entry.get("conversion_func"),
            saes,
            factors,
        )
    return releases


def load_catalogue(path: Path | None = None) -> dict[str, Release]:
    """Every release of the catalogue at `path` (default: the installed sae-lens's); ValueError with a hint if none."""
    path = path or catalogue_path()
    if path is None:
        raise ValueError(ENABLE_HINT)
    return _parse(path)


def list_releases(model: str | None = None, path: Path | None = None) -> list[Release]:
    """Releases, optionally only those whose model name contains `model` (case-insensitive)."""
    releases: Iterable[Release] = load_catalogue(path).values()
    if model:
        releases = [r for r in releases if model.lower() in r.model.lower()]
    return sorted(releases, key=lambda r: r.name)


def resolve(release: str, sae_id: str, path: Path | None = None) -> ReleaseSAE:
    """Where SAE `sae_id` of `release` lives; ValueError naming what is unknown or unsupported."""
    releases = load_catalogue(path)
    entry = releases.get(release)
    if entry is None:
        close = difflib.get_close_matches(release, list(releases), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `mistudio sae releases` lists them"
        raise ValueError(f"SAELens has no release {release!r}{hint}")
    folder = entry.saes.get(sae_id)
    if folder is None:
        close = difflib.get_close_matches(sae_id, list(entry.saes), n=3) or list(entry.saes)[:3]
        raise ValueError(f"release {release!r} has no SAE {sae_id!r}; it has e.g. {', '.join(close)}")
    if not entry.supported:
        raise ValueError(
            f"release {release!r} is read by SAELens's {entry.conversion!r} loader, a layout miStudio does not import"
        )
    layout = LAYOUTS[entry.conversion]
    if layout == "gemma_scope_2" and ("transcoder" in folder or "clt" in folder):
        raise ValueError(f"release {release!r} SAE {sae_id!r} is a transcoder, which this import does not read")
    if layout == "torch_state" and not folder.endswith((".pt", ".pth")):
        raise ValueError(f"release {release!r} SAE {sae_id!r} is not a .pt file this import reads")
    if (layout == "gemma_scope" and "-att" in entry.repo_id) or (layout == "gemma_scope_2" and "attn_out" in folder):
        raise ValueError(
            f"release {release!r} holds attention SAEs on per-head outputs (hook_z), "
            "which miStudio's hooks do not provide"
        )
    return ReleaseSAE(
        release, sae_id, entry.repo_id, folder, entry.model, layout, entry.norm_scaling_factors.get(sae_id)
    )
