"""Register activations computed elsewhere (a safetensors [tokens, d_in] tensor, or a folder of shards)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mistudio_tui.ml.activations.extract import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    now_iso,
    shard_name,
    write_manifest,
)

LINK_MODES = ("auto", "hardlink", "reference", "copy")
_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _source_files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"activation file or folder {path} does not exist")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path} is not a .safetensors file")
        return [path]
    files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not files:
        raise FileNotFoundError(f"folder {path} holds no .safetensors files")
    return files


def _describe(file: Path, key: str | None) -> tuple[str, int, int, str]:
    """(tensor key, rows, width, dtype name) of the activation tensor in `file`."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.keys())
            if key is None:
                if len(keys) != 1:
                    listed = ", ".join(keys) if keys else "none"
                    raise ValueError(f"{file} holds several tensors ({listed}); choose one with key=")
                chosen = keys[0]
            elif key not in keys:
                raise ValueError(f"{file} has no tensor {key!r}; it holds {', '.join(keys)}")
            else:
                chosen = key
            view = handle.get_slice(chosen)
            shape, dtype = view.get_shape(), view.get_dtype()
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # safetensors raises its own error type for malformed files
        raise ValueError(f"{file} is not a readable safetensors file: {exc}") from None
    if len(shape) != 2:
        raise ValueError(f"tensor {chosen!r} in {file} has shape {tuple(shape)}; expected [tokens, d_in]")
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"tensor {chosen!r} in {file} has dtype {dtype}; expected float32, float16 or bfloat16")
    return chosen, int(shape[0]), int(shape[1]), dtype


def _place(source: Path, out_dir: Path, index: int, link: str) -> tuple[str, str]:
    """Put `source` into the set; returns (manifest file entry, how: hardlink | reference | copy)."""
    target = out_dir / shard_name(index)
    if target.exists():
        target.unlink()
    if link in ("auto", "hardlink"):
        try:
            os.link(source, target)
            return target.name, "hardlink"
        except OSError:
            if link == "hardlink":
                raise ValueError(f"cannot hard-link {source} into {out_dir} (another file system?)") from None
    if link in ("auto", "reference"):
        return str(source.resolve()), "reference"
    shutil.copyfile(source, target)
    return target.name, "copy"


def import_activations(
    path: Path | str,
    out_dir: Path | str,
    key: str | None = None,
    hook_name: str | None = None,
    link: str = "auto",
    model: str | None = None,
) -> dict[str, Any]:
    """Register a safetensors file or folder of shards as an activation set without token ids.

    `link`: "auto" hard-links when possible and otherwise references the files in place (nothing copied);
    "copy" copies them.
    """
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    source = Path(path).expanduser().resolve()
    out_dir = Path(out_dir)
    files = _source_files(source)
    described = [_describe(f, key) for f in files]
    chosen = described[0][0]
    width = described[0][2]
    for file, (k, _rows, d, _dtype) in zip(files, described, strict=True):
        if k != chosen:
            raise ValueError(f"{file} holds tensor {k!r} but {files[0]} holds {chosen!r}; choose one with key=")
        if d != width:
            raise ValueError(f"tensor {k!r} in {file} has width {d} but {files[0]} has {width}")
    dtypes = {dt for *_, dt in described}
    if len(dtypes) != 1:
        raise ValueError(f"shards of {source} mix dtypes {sorted(dtypes)}; convert them to one dtype first")
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / MANIFEST_FILE).exists():
        raise ValueError(f"{out_dir} already holds an activation set; choose another folder")
    hook = hook_name or chosen
    shards: list[dict[str, Any]] = []
    modes = set()
    for index, (file, (_k, rows, _d, _dt)) in enumerate(zip(files, described, strict=True)):
        entry, mode = _place(file, out_dir, index, link)
        modes.add(mode)
        shards.append({"file": entry, "n_tokens": rows, "bytes": file.stat().st_size})
    dtype = _DTYPE_NAMES[dtypes.pop()]
    created = now_iso()
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source": "imported",
        "imported_from": str(source),
        "link": sorted(modes)[0] if len(modes) == 1 else "mixed",
        "model": model,
        "hooks": [hook],
        "tensor_keys": {hook: chosen},
        "d_in": width,
        "d_in_by_hook": {hook: width},
        "dtype": dtype,
        "context_size": None,
        "has_token_ids": False,
        "n_tokens": sum(s["n_tokens"] for s in shards),
        "shards": shards,
        "excluded": None,
        "complete": True,
        "created": created,
        "updated": created,
    }
    write_manifest(out_dir, manifest)
    return manifest
