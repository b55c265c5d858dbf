"""The runs list: a filter language (`state:running tag:x words`), sorting by any column, grouping by group name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization, Training
from mistudio_tui.db.rows import tuples
from mistudio_tui.ml.sae.config import K_ARCHITECTURES, architecture_id, shown_architecture

FILTER_KEYS = ("state", "dataset", "model", "tag", "group", "arch")


@dataclass
class RunFilter:
    """Terms of a filter: each key's values are alternatives (OR), keys and free words must all match (AND)."""

    terms: dict[str, list[str]] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.terms and not self.words


def parse_filter(text: str) -> RunFilter:
    """Parse `state:running,paused tag:x free words`; an unknown `key:` raises ValueError naming the keys."""
    result = RunFilter()
    for token in text.split():
        key, sep, value = token.partition(":")
        if not sep:
            result.words.append(token.lower())
            continue
        key = key.lower()
        if key not in FILTER_KEYS:
            raise ValueError(f"unknown filter {key!r}; use {', '.join(k + ':' for k in FILTER_KEYS)} or plain words")
        values = [v.lower() for v in value.split(",") if v]
        if values:
            result.terms.setdefault(key, []).extend(values)
    return result


@dataclass(frozen=True)
class RunRow:
    """A training with the names the list shows and filters on."""

    training: Training
    dataset: str
    model: str

    def field(self, key: str) -> list[str]:
        """The lower-case values of a filter key for this run."""
        t = self.training
        if key == "state":
            return [t.status.lower()]
        if key == "dataset":
            return [self.dataset.lower()]
        if key == "model":
            return [self.model.lower()]
        if key == "tag":
            return [tag.strip().lower() for tag in (t.tags or "").replace(";", ",").split(",") if tag.strip()]
        if key == "group":
            return [(t.group_name or "").lower()]
        return [shown_architecture(t.architecture).lower(), architecture_id(t.architecture)]


def load_rows(runs: Sequence[Training] | None = None) -> list[RunRow]:
    """Runs (all by default) with their dataset and model names, resolved in two queries, not one per run."""
    runs = list(Training.select().order_by(Training.id)) if runs is None else list(runs)
    datasets = dict(tuples(Tokenization.select(Tokenization.id, Dataset.name).join(Dataset)))
    models = dict(tuples(LanguageModel.select(LanguageModel.id, LanguageModel.name)))
    return [RunRow(t, datasets.get(t.tokenization_id, "") or "", models.get(t.model_id, "") or "") for t in runs]


def matches(row: RunRow, run_filter: RunFilter) -> bool:
    """Whether a run passes the filter (values match by prefix, free words by substring of name/tags/group)."""
    for key, wanted in run_filter.terms.items():
        have = row.field(key)
        if not any(h.startswith(w) for h in have for w in wanted):
            return False
    haystack = " ".join([row.training.name, row.training.tags or "", row.training.group_name or ""]).lower()
    return all(word in haystack for word in run_filter.words)


def _sparsity(t: Training) -> float | None:
    sae = (t.config or {}).get("sae", {})
    value = sae.get("k") if t.architecture in K_ARCHITECTURES else sae.get("l1_coefficient")
    return float(value) if isinstance(value, (int, float)) else None


SORT_KEYS: dict[str, Callable[[Training], Any]] = {
    "name": lambda t: t.name.lower(),
    "state": lambda t: t.status,
    "arch": lambda t: shown_architecture(t.architecture),
    "width": lambda t: t.d_sae,
    "k": _sparsity,
    "steps": lambda t: t.steps,
    "loss": lambda t: t.loss,
    "l0": lambda t: t.l0,
    "ev": lambda t: t.explained_variance,
    "tps": lambda t: t.tokens_per_s,
    "device": lambda t: t.device,
    "created": lambda t: t.id,
}


def sort_rows(rows: Sequence[RunRow], key: str, descending: bool = False) -> list[RunRow]:
    """Sorted by `key` (missing values last either way), then runs of one group pulled together."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort column {key!r}; choose one of {', '.join(SORT_KEYS)}")
    get = SORT_KEYS[key]
    present = [r for r in rows if get(r.training) is not None]
    missing = [r for r in rows if get(r.training) is None]
    ordered = sorted(present, key=lambda r: get(r.training), reverse=descending) + missing
    return group_rows(ordered)


def group_rows(rows: Sequence[RunRow]) -> list[RunRow]:
    """Runs sharing a group name placed together where the group's first member stands; order otherwise kept."""
    members: dict[str, list[RunRow]] = {}
    for row in rows:
        if row.training.group_name:
            members.setdefault(row.training.group_name, []).append(row)
    out: list[RunRow] = []
    placed: set[str] = set()
    for row in rows:
        group = row.training.group_name
        if not group:
            out.append(row)
        elif group not in placed:
            placed.add(group)
            out.extend(members[group])
    return out
