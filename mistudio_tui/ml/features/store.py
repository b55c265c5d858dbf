"""The on-disk feature set: per-feature arrays in one safetensors file plus meta.json, read lazily.

Layout of a feature-set folder:
    features.safetensors   arrays whose first dimension is the feature index (see ARRAYS / OPTIONAL_ARRAYS)
    meta.json              format, version, d_sae, tokens seen, window context, sizes, extra metadata

The reader imports no torch (numpy + safetensors only) and reads one feature's rows on demand, so the UI can
show any feature of a 65k-feature set at once. The writer takes torch tensors or numpy arrays alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

if TYPE_CHECKING:
    from mistudio_tui.ml.features.accumulate import ExampleSet, FeatureStats
    from mistudio_tui.ml.features.cooccurrence import Partners
    from mistudio_tui.ml.features.logit_lens import LogitLens
    from mistudio_tui.ml.features.similarity import SimilarFeatures

FORMAT = "mistudio-feature-set"
VERSION = 1
FEATURES_FILE = "features.safetensors"
META_FILE = "meta.json"

# name -> dtype of every array a feature set always has
ARRAYS: dict[str, Any] = {
    "count": np.int64,
    "density": np.float32,
    "mean_nonzero": np.float32,
    "mean_all": np.float32,
    "max": np.float32,
    "min_nonzero": np.float32,
    "dead": np.bool_,
    "hist_counts": np.int64,
    "hist_max": np.float32,
    "quantile_edges": np.float32,
    "top_values": np.float32,
    "top_sequence": np.int64,
    "top_position": np.int32,
    "top_token_ids": np.int32,
    "top_window_tokens": np.int32,
    "top_window_acts": np.float32,
    "top_window_mask": np.bool_,
    "quantile_values": np.float32,
    "quantile_sequence": np.int64,
    "quantile_position": np.int32,
    "quantile_window_tokens": np.int32,
    "quantile_window_acts": np.float32,
    "quantile_window_mask": np.bool_,
}
# group -> name -> dtype of arrays present when the writer was given that result
OPTIONAL_ARRAYS: dict[str, dict[str, Any]] = {
    "logit_lens": {
        "lens_promoted_ids": np.int32,
        "lens_promoted_values": np.float32,
        "lens_suppressed_ids": np.int32,
        "lens_suppressed_values": np.float32,
    },
    "similar": {"similar_ids": np.int32, "similar_cos": np.float32},
    "partners": {
        "partner_ids": np.int32,
        "partner_counts": np.int64,
        "partner_jaccard": np.float32,
        "partner_conditional": np.float32,
        "partner_error": np.int64,
    },
}
SCALARS = ("count", "density", "mean_nonzero", "mean_all", "max", "min_nonzero", "dead")


class FeatureSetError(ValueError):
    """A feature-set folder that is incomplete, corrupt or of another format."""


@dataclass
class Example:
    """One example: a token window with this feature's activation on each token; `marked` is the centre."""

    value: float
    sequence: int
    position: int
    token_ids: np.ndarray  # [W] int32 (pad id outside the sequence)
    activations: np.ndarray  # [W] float32 (0 where masked)
    mask: np.ndarray  # [W] bool: inside the sequence and a counted token
    marked: int  # index in the window of the token the example is about


@dataclass
class QuantileBand:
    """Examples whose activation lies in [low, high], one band of equal probability mass."""

    low: float
    high: float
    examples: list[Example]


@dataclass
class FeatureDetail:
    """Everything the feature page shows for one feature (plain numpy and Python values)."""

    index: int
    count: int
    density: float
    mean_nonzero: float
    mean_all: float
    max: float
    min_nonzero: float
    dead: bool
    top_examples: list[Example]
    quantile_bands: list[QuantileBand]
    hist_counts: np.ndarray  # [bins] counts of non-zero activations
    hist_edges: np.ndarray  # [bins + 1]
    promoted_ids: np.ndarray | None = None
    promoted_values: np.ndarray | None = None
    suppressed_ids: np.ndarray | None = None
    suppressed_values: np.ndarray | None = None
    similar_ids: np.ndarray | None = None
    similar_cos: np.ndarray | None = None
    partner_ids: np.ndarray | None = None
    partner_counts: np.ndarray | None = None
    partner_jaccard: np.ndarray | None = None
    partner_conditional: np.ndarray | None = None
    partner_error: np.ndarray | None = None


def _numpy(value: Any, dtype: Any) -> np.ndarray:
    """A contiguous numpy array of `dtype` from a torch tensor (CPU or CUDA) or array-like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=dtype)


def _example_arrays(prefix: str, examples: ExampleSet, before: int) -> dict[str, Any]:
    arrays = {
        f"{prefix}_values": examples.value,
        f"{prefix}_sequence": examples.sequence,
        f"{prefix}_position": examples.position,
        f"{prefix}_window_tokens": examples.tokens,
        f"{prefix}_window_acts": examples.acts,
        f"{prefix}_window_mask": examples.mask,
    }
    if prefix == "top":
        arrays["top_token_ids"] = examples.tokens[..., before]
    return arrays


class FeatureSetWriter:
    """Writes a feature set into `folder`; meta.json is written last, so its presence marks a complete set."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def write(
        self,
        stats: FeatureStats,
        extra: Mapping[str, Any] | None = None,
        *,
        logit_lens: LogitLens | None = None,
        similar: SimilarFeatures | None = None,
        partners: Partners | None = None,
    ) -> Path:
        """Save `stats` with optional logit lens, similar features and partners; `extra` goes to meta.json."""
        d_sae = stats.d_sae
        before = stats.context[0]
        raw: dict[str, Any] = {name: getattr(stats, name) for name in SCALARS}
        raw.update(
            hist_counts=stats.hist_counts,
            hist_max=stats.hist_max,
            quantile_edges=stats.quantile_edges,
            **_example_arrays("top", stats.top, before),
            **_example_arrays("quantile", stats.quantiles, before),
        )
        arrays = {name: _numpy(raw[name], dtype) for name, dtype in ARRAYS.items()}
        results = {"logit_lens": logit_lens, "similar": similar, "partners": partners}
        present = []
        for group, result in results.items():
            if result is None:
                continue
            present.append(group)
            for (name, dtype), value in zip(OPTIONAL_ARRAYS[group].items(), result, strict=True):
                arrays[name] = _numpy(value, dtype)
        for name, array in arrays.items():
            if array.ndim == 0 or array.shape[0] != d_sae:
                raise ValueError(f"array {name!r} has shape {array.shape}; expected {d_sae} features first")
        try:
            extra_json = json.loads(json.dumps(dict(extra or {})))
        except (TypeError, ValueError) as err:
            raise ValueError(f"extra metadata for the feature set must be JSON-serialisable: {err}") from None
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "d_sae": d_sae,
            "tokens_seen": int(stats.tokens_seen),
            "context": list(stats.context),
            "pad_id": int(stats.pad_id),
            "top_k": stats.top_k,
            "n_quantiles": stats.n_quantiles,
            "per_quantile": stats.per_quantile,
            "hist_bins": stats.hist_bins,
            "dead_density": float(stats.dead_density),
            "n_dead": int(arrays["dead"].sum()),
            "optional": present,
            "extra": extra_json,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / META_FILE
        meta_path.unlink(missing_ok=True)
        tmp = self.folder / (FEATURES_FILE + ".tmp")
        save_file(arrays, tmp, metadata={"format": FORMAT, "version": str(VERSION)})
        os.replace(tmp, self.folder / FEATURES_FILE)
        tmp_meta = self.folder / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_meta, meta_path)
        return self.folder


class FeatureSetReader:
    """Lazy read side of a feature set: `feature(i)`, `summary_table()`, `column(name)`, `len()`."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.meta = self._read_meta()
        self.d_sae = int(self.meta["d_sae"])
        self.context = (int(self.meta["context"][0]), int(self.meta["context"][1]))
        path = self.folder / FEATURES_FILE
        if not path.exists():
            raise FileNotFoundError(f"feature set at {self.folder} is incomplete: {FEATURES_FILE} is missing")
        try:
            self._file = safe_open(str(path), framework="np")
            names = self._file.keys()
            shapes = {name: self._file.get_slice(name).get_shape() for name in names}
        except SafetensorError as err:
            raise FeatureSetError(f"{path} is not a readable safetensors file ({err})") from None
        self.optional = [group for group in self.meta.get("optional", []) if group in OPTIONAL_ARRAYS]
        expected = list(ARRAYS) + [name for group in self.optional for name in OPTIONAL_ARRAYS[group]]
        for name in expected:
            if name not in shapes:
                raise FeatureSetError(f"{path} lacks the array {name!r}; the feature set is corrupt")
            if not shapes[name] or shapes[name][0] != self.d_sae:
                raise FeatureSetError(
                    f"{path}: array {name!r} has shape {shapes[name]} but meta.json says d_sae={self.d_sae}"
                )

    def _read_meta(self) -> dict[str, Any]:
        path = self.folder / META_FILE
        if not path.exists():
            raise FileNotFoundError(f"feature set at {self.folder} is incomplete: {META_FILE} is missing")
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FeatureSetError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise FeatureSetError(f"{path} does not describe a miStudio feature set (format {FORMAT!r})")
        if int(meta.get("version", 0)) > VERSION:
            raise FeatureSetError(f"{path} has format version {meta.get('version')}; this miStudio reads {VERSION}")
        for key in ("d_sae", "context", "tokens_seen"):
            if key not in meta:
                raise FeatureSetError(f"{path} lacks the field {key!r}")
        return meta

    def __len__(self) -> int:
        return self.d_sae

    def __enter__(self) -> FeatureSetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open file."""
        self._file.__exit__(None, None, None)

    def _rows(self, name: str, lo: int, hi: int) -> np.ndarray:
        return np.asarray(self._file.get_slice(name)[lo:hi])

    def column(self, name: str) -> np.ndarray:
        """A whole per-feature array, e.g. `density` [d_sae] (read on demand; large window arrays are big)."""
        if name not in ARRAYS and not any(name in OPTIONAL_ARRAYS[g] for g in self.optional):
            raise ValueError(f"feature set {self.folder} has no array {name!r}")
        return self._rows(name, 0, self.d_sae)

    def _check_index(self, index: int) -> int:
        if not 0 <= int(index) < self.d_sae:
            raise ValueError(f"feature {index} is out of range: this feature set has features 0..{self.d_sae - 1}")
        return int(index)

    def _examples(self, prefix: str, i: int) -> tuple[np.ndarray, ...]:
        return tuple(
            self._rows(f"{prefix}_{part}", i, i + 1)[0]
            for part in ("values", "sequence", "position", "window_tokens", "window_acts", "window_mask")
        )

    def _to_examples(
        self,
        values: np.ndarray,
        sequence: np.ndarray,
        position: np.ndarray,
        tokens: np.ndarray,
        acts: np.ndarray,
        mask: np.ndarray,
    ) -> list[Example]:
        return [
            Example(
                float(values[s]),
                int(sequence[s]),
                int(position[s]),
                tokens[s],
                acts[s],
                mask[s],
                self.context[0],
            )
            for s in range(len(values))
            if sequence[s] >= 0
        ]

    def feature(self, index: int) -> FeatureDetail:
        """Everything stored about feature `index`, read from disk on demand."""
        i = self._check_index(index)
        scalars = {name: self._rows(name, i, i + 1)[0] for name in SCALARS}
        top = self._to_examples(*self._examples("top", i))
        values, sequence, position, tokens, acts, mask = self._examples("quantile", i)
        edges = self._rows("quantile_edges", i, i + 1)[0]
        bands = [
            QuantileBand(
                float(edges[b]),
                float(edges[b + 1]),
                self._to_examples(values[b], sequence[b], position[b], tokens[b], acts[b], mask[b]),
            )
            for b in range(len(values))
        ]
        counts = self._rows("hist_counts", i, i + 1)[0]
        hist_max = float(self._rows("hist_max", i, i + 1)[0])
        optional: dict[str, np.ndarray] = {}
        for group in self.optional:
            for name in OPTIONAL_ARRAYS[group]:
                optional[name.removeprefix("lens_")] = self._rows(name, i, i + 1)[0]
        return FeatureDetail(
            index=i,
            count=int(scalars["count"]),
            density=float(scalars["density"]),
            mean_nonzero=float(scalars["mean_nonzero"]),
            mean_all=float(scalars["mean_all"]),
            max=float(scalars["max"]),
            min_nonzero=float(scalars["min_nonzero"]),
            dead=bool(scalars["dead"]),
            top_examples=top,
            quantile_bands=bands,
            hist_counts=counts,
            hist_edges=np.linspace(0.0, hist_max, len(counts) + 1, dtype=np.float32),
            **optional,
        )

    def summary_table(self, chunk: int = 4096) -> Iterator[dict[str, Any]]:
        """Per-feature dicts (index, count, density, mean, mean_all, max, top_token_ids, dead) for the DB."""
        for lo in range(0, self.d_sae, chunk):
            hi = min(lo + chunk, self.d_sae)
            cols = {name: self._rows(name, lo, hi) for name in SCALARS}
            top_tokens = self._rows("top_token_ids", lo, hi)
            top_sequence = self._rows("top_sequence", lo, hi)
            for j in range(hi - lo):
                yield {
                    "index": lo + j,
                    "count": int(cols["count"][j]),
                    "density": float(cols["density"][j]),
                    "mean": float(cols["mean_nonzero"][j]),
                    "mean_all": float(cols["mean_all"][j]),
                    "max": float(cols["max"][j]),
                    "top_token_ids": [int(t) for t in top_tokens[j][top_sequence[j] >= 0]],
                    "dead": bool(cols["dead"][j]),
                }
