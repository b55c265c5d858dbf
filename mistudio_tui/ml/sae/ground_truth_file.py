"""The ground-truth file of a synthetic world, checked from its header alone (torch-free: the CLI checks it too)."""

from __future__ import annotations

from pathlib import Path

GROUND_TRUTH_KEY = "gt"  # the [features, d_in] tensor of a ground-truth safetensors file
GROUND_TRUTH_FILE = "ground_truth.safetensors"  # its name beside the shards of a synthetic activation set


def ground_truth_shape(path: Path, d_in: int | None = None) -> tuple[int, int]:
    """(features, d_in) of the `gt` tensor in `path`; ValueError or FileNotFoundError naming what is wrong."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            keys = list(handle.keys())
            if GROUND_TRUTH_KEY not in keys:
                raise ValueError(
                    f"{path} has no tensor {GROUND_TRUTH_KEY!r} (it holds {', '.join(keys) or 'nothing'}); "
                    f"expected the true features as {GROUND_TRUTH_KEY!r} [features, d_in]"
                )
            shape = handle.get_slice(GROUND_TRUTH_KEY).get_shape()
    except ValueError:
        raise
    except Exception as exc:  # safetensors raises its own error type for malformed files
        raise ValueError(f"{path} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    if len(shape) != 2 or shape[0] == 0:
        raise ValueError(f"{path}: {GROUND_TRUTH_KEY!r} has shape {tuple(shape)}, expected [features, d_in]")
    if d_in is not None and shape[1] != d_in:
        raise ValueError(f"{path}: the true features have d_in={shape[1]}, but the SAE has d_in={d_in}")
    return int(shape[0]), int(shape[1])
