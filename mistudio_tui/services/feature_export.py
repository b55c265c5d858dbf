"""Export a feature set (statistics, labels, examples as token text) as JSON, JSONL or a Neuronpedia-style folder.

Torch-free: reads the feature store with numpy/safetensors and the labels from the database.

Neuronpedia layout (one `<index>.json` per feature), following the field names of SAEDashboard's Neuronpedia
feature export: `index`/`feature_index`, `pos_str`/`pos_values` and `neg_str`/`neg_values` (logit lens),
`frac_nonzero`, `freq_hist_data_bar_heights`/`freq_hist_data_bar_values` (non-zero activation histogram),
`topkCosSimIndices`/`topkCosSimValues` (similar features), `activations` (each with `tokens`, `values`, `bin_min`,
`bin_max`, `qualifying_token_index`, `maxValue`) and `explanations` (`description`, `typeName`,
`explanationModelName`, `score`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mistudio_tui.db.features import current_labels
from mistudio_tui.db.models import Feature, FeatureLabel, FeatureSet
from mistudio_tui.db.states import RunState
from mistudio_tui.ml.features.store import Example, FeatureDetail, FeatureSetReader
from mistudio_tui.ml.features.table import read_vocab
from mistudio_tui.ml.token_display import token_text
from mistudio_tui.services.staging import staged_folder

FORMATS = ("json", "jsonl", "neuronpedia")
TOP_BIN = -1.0  # bin_min/bin_max of the top-activation examples, as Neuronpedia marks them


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how many features it holds."""

    path: Path
    format: str
    n_features: int
    n_dead_skipped: int = 0


def parse_feature_indices(text: str) -> list[int]:
    """'0-9,42' -> [0, 1, ..., 9, 42] (sorted, without repeats)."""
    indices: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ValueError(f"--features {text!r}: expected indices and ranges like 0-9,42") from None
        if first < 0 or last < first:
            raise ValueError(f"--features {text!r}: {part!r} is not a range of non-negative indices")
        indices.update(range(first, last + 1))
    if not indices:
        raise ValueError(f"--features {text!r}: no feature index given")
    return sorted(indices)


def export_feature_set(
    feature_set: FeatureSet,
    path: Path | str,
    fmt: str,
    indices: Sequence[int] | None = None,
    include_dead: bool | None = None,
) -> ExportResult:
    """Write the features `indices` (default: all) of `feature_set` to `path` in format `fmt`.

    Neuronpedia pages of dead features (nothing to show) are skipped unless `include_dead`; the JSON formats keep
    them unless `include_dead` is False. The folder the output goes into must exist (a typo makes no tree)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if feature_set.status not in RunState.USABLE:
        raise ValueError(
            f"feature set '{feature_set.name}' is {feature_set.status}; only a finished one can be exported"
        )
    folder = Path(feature_set.path)
    if not folder.is_dir():
        raise FileNotFoundError(f"feature set '{feature_set.name}': its folder {folder} is missing")
    out = Path(path).expanduser()
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {out}: the folder {_missing_folder(out.parent)} does not exist")
    if include_dead is None:
        include_dead = fmt != "neuronpedia"
    vocab = read_vocab(folder)
    skipped: list[int] = []
    with FeatureSetReader(folder) as reader:
        wanted = _check_indices(feature_set, reader.d_sae, indices)
        records = _records(feature_set, reader, vocab, wanted, include_dead, skipped)
        if fmt == "neuronpedia":
            n = _write_neuronpedia(out, (neuronpedia_record(r) for r in records))
        elif fmt == "jsonl":
            n = _write_lines(out, records)
        else:
            n = _write_document(out, feature_set, reader, records)
    return ExportResult(out, fmt, n, len(skipped))


def _missing_folder(folder: Path) -> Path:
    """The outermost folder of `folder`'s path that does not exist."""
    while not folder.parent.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _check_indices(feature_set: FeatureSet, d_sae: int, indices: Sequence[int] | None) -> list[int]:
    if indices is None:
        return list(range(d_sae))
    bad = [i for i in indices if not 0 <= i < d_sae]
    if bad:
        raise ValueError(f"feature set '{feature_set.name}' has features 0..{d_sae - 1}; {bad[0]} is out of range")
    return sorted(set(indices))


def _records(
    feature_set: FeatureSet,
    reader: FeatureSetReader,
    vocab: list[str],
    indices: list[int],
    include_dead: bool = True,
    skipped: list[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """One export record per feature: database row and labels joined with the stored statistics and examples."""
    rows = {f.index: f for f in Feature.select().where(Feature.feature_set == feature_set.id)}
    labels = current_labels(feature_set.training_id)
    for index in indices:
        detail = reader.feature(index)
        if detail.dead and not include_dead:
            if skipped is not None:
                skipped.append(index)
            continue
        yield feature_record(detail, rows.get(index), labels.get(index), vocab)


def example_record(example: Example, vocab: list[str]) -> dict[str, Any]:
    """One example as token texts and activations, trimmed to the part of the window inside the sequence."""
    inside = np.flatnonzero(example.mask)
    lo, hi = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (example.marked, example.marked + 1)
    lo, hi = min(lo, example.marked), max(hi, example.marked + 1)
    ids = [int(t) for t in example.token_ids[lo:hi]]
    return {
        "value": float(example.value),
        "sequence": int(example.sequence),
        "position": int(example.position),
        "marked": example.marked - lo,
        "token_ids": ids,
        "tokens": [token_text(vocab, t) for t in ids],
        "activations": [float(v) for v in example.activations[lo:hi]],
    }


def _lens(ids: np.ndarray | None, values: np.ndarray | None, vocab: list[str]) -> list[dict[str, Any]]:
    if ids is None or values is None:
        return []
    return [
        {"token": token_text(vocab, int(t)), "token_id": int(t), "value": float(v)}
        for t, v in zip(ids, values, strict=True)
    ]


def feature_record(
    detail: FeatureDetail, row: Feature | None, label: FeatureLabel | None, vocab: list[str]
) -> dict[str, Any]:
    """Everything exported about one feature, as plain JSON values."""
    similar = []
    if detail.similar_ids is not None and detail.similar_cos is not None:
        similar = [
            {"index": int(i), "cosine": float(c)} for i, c in zip(detail.similar_ids, detail.similar_cos, strict=True)
        ]
    return {
        "index": detail.index,
        "density": detail.density,
        "count": detail.count,
        "mean_activation": detail.mean_nonzero,
        "mean_activation_all": detail.mean_all,
        "max_activation": detail.max,
        "dead": detail.dead,
        "top_tokens": row.top_tokens if row is not None else "",
        "technical_label": row.technical_label if row is not None else "",
        "semantic_label": row.semantic_label if row is not None else "",
        "label_score": row.label_score if row is not None else None,
        "label": None
        if label is None
        else {
            "technical": label.technical,
            "semantic": label.semantic,
            "method": label.method,
            "model": label.model,
            "author": label.author,
            "score": label.score,
            "created_at": label.created_at.isoformat() if label.created_at else None,
        },
        "histogram": {
            "edges": [float(e) for e in detail.hist_edges],
            "counts": [int(c) for c in detail.hist_counts],
        },
        "logit_lens": {
            "promoted": _lens(detail.promoted_ids, detail.promoted_values, vocab),
            "suppressed": _lens(detail.suppressed_ids, detail.suppressed_values, vocab),
        },
        "similar": similar,
        "top_examples": [example_record(e, vocab) for e in detail.top_examples],
        "quantile_examples": [
            {"low": band.low, "high": band.high, "examples": [example_record(e, vocab) for e in band.examples]}
            for band in detail.quantile_bands
        ],
    }


def neuronpedia_record(record: dict[str, Any]) -> dict[str, Any]:
    """A feature record in Neuronpedia's feature-dashboard field names."""
    edges = record["histogram"]["edges"]
    activations = [_np_activation(e, TOP_BIN, TOP_BIN) for e in record["top_examples"]]
    for band in record["quantile_examples"]:
        activations += [_np_activation(e, band["low"], band["high"]) for e in band["examples"]]
    explanations = []
    label = record["label"]
    if label is not None and label["semantic"]:
        explanations.append(
            {
                "description": label["semantic"],
                "typeName": label["method"],
                "explanationModelName": label["model"] or label["author"] or "",
                "score": label["score"],
            }
        )
    promoted, suppressed = record["logit_lens"]["promoted"], record["logit_lens"]["suppressed"]
    return {
        "index": record["index"],
        "feature_index": record["index"],
        "frac_nonzero": record["density"],
        "maxActApprox": record["max_activation"],
        "pos_str": [p["token"] for p in promoted],
        "pos_values": [p["value"] for p in promoted],
        "neg_str": [s["token"] for s in suppressed],
        "neg_values": [s["value"] for s in suppressed],
        "freq_hist_data_bar_heights": record["histogram"]["counts"],
        "freq_hist_data_bar_values": [(a + b) / 2 for a, b in itertools.pairwise(edges)],
        "topkCosSimIndices": [s["index"] for s in record["similar"]],
        "topkCosSimValues": [s["cosine"] for s in record["similar"]],
        "activations": activations,
        "explanations": explanations,
    }


def _np_activation(example: dict[str, Any], bin_min: float, bin_max: float) -> dict[str, Any]:
    return {
        "tokens": example["tokens"],
        "values": example["activations"],
        "maxValue": example["value"],
        "qualifying_token_index": example["marked"],
        "bin_min": bin_min,
        "bin_max": bin_max,
    }


def _write_atomically(path: Path, write: Any) -> int:
    """Write through a temporary file next to `path`, renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            n: int = write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _write_lines(path: Path, records: Iterator[dict[str, Any]]) -> int:
    def write(fh: Any) -> int:
        n = 0
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n

    return _write_atomically(path, write)


def _write_document(
    path: Path, feature_set: FeatureSet, reader: FeatureSetReader, records: Iterator[dict[str, Any]]
) -> int:
    header = {
        "format": "mistudio-feature-export",
        "version": 1,
        "feature_set": {
            "id": feature_set.id,
            "name": feature_set.name,
            "training": feature_set.training.name,
            "d_sae": reader.d_sae,
            "n_tokens": feature_set.n_tokens,
            "config": feature_set.config,
        },
    }

    def write(fh: Any) -> int:
        fh.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "features": [')
        n = 0
        for record in records:
            fh.write(("," if n else "") + "\n" + json.dumps(record, ensure_ascii=False))
            n += 1
        fh.write("\n]}\n")
        return n

    return _write_atomically(path, write)


def _write_neuronpedia(folder: Path, records: Iterator[dict[str, Any]]) -> int:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; the neuronpedia format writes a folder of <index>.json files")
    n = 0
    with staged_folder(folder) as staged:
        for record in records:
            (staged / f"{record['index']}.json").write_text(json.dumps(record), encoding="utf-8")
            n += 1
    return n
