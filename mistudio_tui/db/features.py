"""Feature queries: pages sorted and filtered in SQLite (the browser never loads every row), and labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peewee import fn

from mistudio_tui.db.models import Feature, FeatureLabel, FeatureSet, Training, database, utcnow

SORT_COLUMNS = {
    "index": Feature.index,
    "density": Feature.density,
    "max_activation": Feature.max_activation,
    "mean_activation": Feature.mean_activation,
    "label_score": Feature.label_score,
    "technical_label": Feature.technical_label,
    "semantic_label": Feature.semantic_label,
}


@dataclass
class FeatureFilter:
    """What the browser shows: a search text, a density range, labelled/dead/bookmarked toggles."""

    search: str = ""
    min_density: float | None = None
    max_density: float | None = None
    labelled: bool | None = None
    dead: bool | None = None
    bookmarked: bool | None = None
    min_score: float | None = None

    def apply(self, query: Any) -> Any:
        if self.search:
            like = f"%{self.search.strip()}%"
            query = query.where(
                (Feature.technical_label**like)
                | Feature.semantic_label**like
                | Feature.top_tokens**like
                | (Feature.index == _as_int(self.search))
            )
        if self.min_density is not None:
            query = query.where(Feature.density >= self.min_density)
        if self.max_density is not None:
            query = query.where(Feature.density <= self.max_density)
        if self.labelled is True:
            query = query.where(Feature.semantic_label != "")
        elif self.labelled is False:
            query = query.where(Feature.semantic_label == "")
        if self.dead is not None:
            query = query.where(Feature.dead == self.dead)
        if self.bookmarked is not None:
            query = query.where(Feature.bookmarked == self.bookmarked)
        if self.min_score is not None:
            query = query.where(Feature.label_score >= self.min_score)
        return query


def _as_int(text: str) -> int:
    text = text.strip().lstrip("#")
    return int(text) if text.isdigit() else -1


def sort_column(name: str) -> Any:
    if name not in SORT_COLUMNS:
        raise ValueError(f"cannot sort by {name!r}; choose one of {', '.join(SORT_COLUMNS)}")
    return SORT_COLUMNS[name]


def feature_query(feature_set_id: int, flt: FeatureFilter | None = None) -> Any:
    query = Feature.select().where(Feature.feature_set == feature_set_id)
    return (flt or FeatureFilter()).apply(query)


def feature_page(
    feature_set_id: int,
    sort: str = "index",
    descending: bool = False,
    flt: FeatureFilter | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[Feature]:
    """One page of features in the requested order (ties broken by index)."""
    column = sort_column(sort)
    order = column.desc(nulls="LAST") if descending else column.asc(nulls="LAST")
    query = feature_query(feature_set_id, flt).order_by(order, Feature.index)
    return list(query.offset(offset).limit(limit))


def feature_count(feature_set_id: int, flt: FeatureFilter | None = None) -> int:
    return feature_query(feature_set_id, flt).count()


def position_of(feature_set_id: int, index: int, sort: str, descending: bool, flt: FeatureFilter | None) -> int:
    """The row number of feature `index` in the current order (for 'jump to feature'); -1 if filtered out."""
    row = Feature.get_or_none((Feature.feature_set == feature_set_id) & (Feature.index == index))
    if row is None or not feature_query(feature_set_id, flt).where(Feature.id == row.id).exists():
        return -1
    column = sort_column(sort)
    value = getattr(row, column.name)
    base = feature_query(feature_set_id, flt)
    if value is None:
        before = base.where(column.is_null(False)).count()
        return before + base.where(column.is_null() & (Feature.index < index)).count()
    if descending:
        ahead = base.where((column > value) | ((column == value) & (Feature.index < index)))
    else:
        ahead = base.where((column < value) | ((column == value) & (Feature.index < index)))
    return ahead.count()


def bulk_insert_features(feature_set: FeatureSet, rows: Iterable[dict[str, Any]], batch: int = 2000) -> int:
    """Insert feature rows (dicts with index, density, ...) fast, carrying over current labels of the SAE."""
    labels = current_labels(feature_set.training_id)
    n = 0
    buffer: list[dict[str, Any]] = []

    def flush() -> None:
        if buffer:
            Feature.insert_many(buffer).execute()
            buffer.clear()

    with database.atomic():
        for row in rows:
            label = labels.get(int(row["index"]))
            record = {
                "feature_set": feature_set.id,
                "index": int(row["index"]),
                "density": float(row.get("density", 0.0)),
                "mean_activation": float(row.get("mean_activation", 0.0)),
                "max_activation": float(row.get("max_activation", 0.0)),
                "top_tokens": str(row.get("top_tokens", "")),
                "dead": bool(row.get("dead", False)),
                "technical_label": label.technical if label else str(row.get("technical_label", "")),
                "semantic_label": label.semantic if label else "",
                "label_score": label.score if label else None,
            }
            buffer.append(record)
            n += 1
            if len(buffer) >= batch:
                flush()
        flush()
    return n


def current_labels(training_id: int) -> dict[int, FeatureLabel]:
    """The current label of each labelled latent of an SAE."""
    query = FeatureLabel.select().where((FeatureLabel.training == training_id) & FeatureLabel.is_current)
    return {label.feature_index: label for label in query}


def add_label(
    training: Training | int,
    feature_index: int,
    technical: str = "",
    semantic: str = "",
    method: str = "manual",
    make_current: bool | None = None,
    **details: Any,
) -> FeatureLabel:
    """Store a label; it becomes current unless a manual label is current and this one is automatic."""
    training_id = training if isinstance(training, int) else training.id
    with database.atomic():
        current = FeatureLabel.get_or_none(
            (FeatureLabel.training == training_id)
            & (FeatureLabel.feature_index == feature_index)
            & FeatureLabel.is_current
        )
        if make_current is None:
            make_current = method == "manual" or current is None or current.method != "manual"
        if method == "manual" and current is not None:  # a partial edit keeps the other half
            technical = technical or current.technical
            semantic = semantic or current.semantic
        label = FeatureLabel.create(
            training=training_id,
            feature_index=feature_index,
            technical=technical,
            semantic=semantic,
            method=method,
            is_current=False,
            created_at=utcnow(),
            **details,
        )
        if make_current:
            set_current(label)
    return label


def set_current(label: FeatureLabel) -> None:
    """Make `label` the current one of its latent and copy it onto every feature row of that SAE."""
    with database.atomic():
        FeatureLabel.update(is_current=False).where(
            (FeatureLabel.training == label.training_id) & (FeatureLabel.feature_index == label.feature_index)
        ).execute()
        FeatureLabel.update(is_current=True).where(FeatureLabel.id == label.id).execute()
        sets = FeatureSet.select(FeatureSet.id).where(FeatureSet.training == label.training_id)
        values: dict[Any, Any] = {Feature.label_score: label.score}
        if label.technical:
            values[Feature.technical_label] = label.technical
        values[Feature.semantic_label] = label.semantic
        Feature.update(values).where(Feature.feature_set.in_(sets) & (Feature.index == label.feature_index)).execute()


def labels_of(training_id: int, feature_index: int) -> list[FeatureLabel]:
    """Every label of a latent, newest first."""
    return list(
        FeatureLabel.select()
        .where((FeatureLabel.training == training_id) & (FeatureLabel.feature_index == feature_index))
        .order_by(FeatureLabel.created_at.desc(), FeatureLabel.id.desc())
    )


def density_histogram(feature_set_id: int, bins: int = 30) -> tuple[list[float], list[int]]:
    """Histogram of log10 density over the alive features (edges, counts), computed in SQL."""
    import math

    query = Feature.select(fn.MIN(Feature.density), fn.MAX(Feature.density)).where(
        (Feature.feature_set == feature_set_id) & (Feature.density > 0)
    )
    lo, hi = query.scalar(as_tuple=True)
    if lo is None:
        return [], []
    lo_l, hi_l = math.log10(lo), math.log10(hi)
    width = max((hi_l - lo_l) / bins, 1e-9)
    counts = [0] * bins
    for (density,) in (
        Feature.select(Feature.density).where((Feature.feature_set == feature_set_id) & (Feature.density > 0)).tuples()
    ):
        i = min(int((math.log10(density) - lo_l) / width), bins - 1)
        counts[i] += 1
    edges = [lo_l + i * width for i in range(bins + 1)]
    return edges, counts
