"""Feature queries: pages sorted and filtered in SQLite (the browser never loads every row), and labels."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peewee import SQL, Case, Tuple, fn

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
    max_score: float | None = None

    def apply(self, query: Any) -> Any:
        if self.search.strip():
            query = query.where(text_match(self.search.strip()) | (Feature.index == _as_int(self.search)))
        if self.min_density is not None:
            query = query.where(Feature.density >= self.min_density)
        if self.max_density is not None:
            query = query.where(Feature.density <= self.max_density)
        if self.labelled is not None:
            query = query.where(Feature.labelled == self.labelled)
        if self.dead is not None:
            query = query.where(Feature.dead == self.dead)
        if self.bookmarked is not None:
            query = query.where(Feature.bookmarked == self.bookmarked)
        if self.min_score is not None:
            query = query.where(Feature.label_score >= self.min_score)
        if self.max_score is not None:
            query = query.where(Feature.label_score <= self.max_score)
        return query


FILTER_WORDS = {
    "labelled": ("labelled", True),
    "labeled": ("labelled", True),
    "unlabelled": ("labelled", False),
    "unlabeled": ("labelled", False),
    "dead": ("dead", True),
    "alive": ("dead", False),
    "bookmarked": ("bookmarked", True),
}
FILTER_RANGES = {"density": ("min_density", "max_density"), "score": ("min_score", "max_score")}
FILTER_TERM = re.compile(r"^(density|score)(>=|<=|>|<|=)(.+)$")
FILTER_HELP = (
    "density>1e-3 density<0.1 score>=0.7 labelled unlabelled dead alive bookmarked "
    "(! negates a word; labelled: has a semantic label)"
)


def parse_filter(text: str, search: str = "") -> FeatureFilter:
    """Parse a filter such as `density>1e-3 labelled score>=0.7 !dead` (bounds are inclusive)."""
    flt = FeatureFilter(search=search)
    for term in text.split():
        word = term.lower()
        negated = word.startswith("!")
        if word.lstrip("!") in FILTER_WORDS:
            name, value = FILTER_WORDS[word.lstrip("!")]
            setattr(flt, name, value != negated)
            continue
        match = FILTER_TERM.match(word)
        if match is None:
            raise ValueError(f"filter: {term!r} is not understood; use terms like {FILTER_HELP}")
        field, op, raw = match.groups()
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"filter: {term!r} needs a number after {field}{op}, not {raw!r}") from None
        low, high = FILTER_RANGES[field]
        if op in (">", ">=", "="):
            setattr(flt, low, number)
        if op in ("<", "<=", "="):
            setattr(flt, high, number)
    return flt


def toggle_bookmark(feature_set_id: int, index: int) -> bool:
    """Flip the bookmark of feature `index` of a feature set; returns the new state."""
    row = Feature.get_or_none((Feature.feature_set == feature_set_id) & (Feature.index == index))
    if row is None:
        raise ValueError(f"feature set {feature_set_id} has no feature {index}")
    Feature.update(bookmarked=not row.bookmarked).where(Feature.id == row.id).execute()
    return not row.bookmarked


TRIGRAM = 3  # the trigram index finds substrings of at least this many characters


def text_match(text: str) -> Any:
    """Features whose technical label, semantic label or top tokens contain `text` (any case)."""
    if len(text) < TRIGRAM:
        like = f"%{text}%"
        return (Feature.technical_label**like) | (Feature.semantic_label**like) | (Feature.top_tokens**like)
    phrase = '"' + text.replace('"', '""') + '"'
    return Feature.id.in_(SQL("(SELECT rowid FROM feature_text WHERE feature_text MATCH ?)", [phrase]))


def _as_int(text: str) -> int:
    text = text.strip().lstrip("#")
    return int(text) if text.isdigit() else -1


def data_version() -> tuple[int, int]:
    """A cheap token that changes whenever any connection commits to the database (this one included)."""
    connection = database.connection()
    return connection.execute("PRAGMA data_version").fetchone()[0], connection.total_changes


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
    total: int | None = None,
) -> list[Feature]:
    """One page of features in the requested order (ties broken by index, in the same direction).

    Given the `total` rows of this order and filter, a page in the second half is read from the far end and put
    back in order: an OFFSET walks every index entry before the page, so the last page cost as much as a full scan.
    """
    column = sort_column(sort)
    reverse = False
    if total is not None and offset + limit // 2 > total // 2:
        reverse, end = True, min(total, offset + limit)
        offset, limit = total - end, max(0, end - offset)
    # one direction for both keys lets SQLite walk the (feature_set, column, index) index; nulls stay last
    if descending != reverse:
        order = (column.desc(nulls="FIRST" if reverse else "LAST"), Feature.index.desc())
    else:
        order = (column.asc(nulls="FIRST" if reverse else "LAST"), Feature.index.asc())
    rows = list(feature_query(feature_set_id, flt).order_by(*order).offset(offset).limit(limit))
    return rows[::-1] if reverse else rows


def feature_count(feature_set_id: int, flt: FeatureFilter | None = None) -> int:
    count: int = feature_query(feature_set_id, flt).count()
    return count


def position_of(feature_set_id: int, index: int, sort: str, descending: bool, flt: FeatureFilter | None) -> int:
    """The row number of feature `index` in the current order (for 'jump to feature'); -1 if filtered out."""
    return count_and_position(feature_set_id, flt, sort, descending, index)[1]


def count_and_position(
    feature_set_id: int,
    flt: FeatureFilter | None = None,
    sort: str = "index",
    descending: bool = False,
    index: int | None = None,
) -> tuple[int, int]:
    """How many features the filter shows, and the row of feature `index` among them in this order (-1: not shown).

    Numeric filters read the set's index for `sort` (it carries the filter columns): a count, then a range count of
    the rows ahead. A text search reads the text index once, for both numbers.
    """
    column = sort_column(sort)
    flt = flt or FeatureFilter()
    query = feature_query(feature_set_id, flt)
    kept = None
    if index is not None:
        kept = (
            Feature.select(column.alias("value"))
            .where((Feature.feature_set == feature_set_id) & (Feature.index == index))
            .dicts()
            .first()
        )
    if kept is None:
        return query.count(), -1
    value = kept["value"]
    if value is None:  # NULLs sort last in both directions
        ahead = column.is_null(False) | (Feature.index > index if descending else Feature.index < index)
    else:
        tie, mark = Tuple(column, Feature.index), Tuple(value, index)
        ahead = tie > mark if descending else tie < mark
    if flt.search.strip():
        total, before, shown = query.select(
            fn.COUNT(SQL("*")), fn.SUM(Case(None, [(ahead, 1)], 0)), fn.MAX(Feature.index == index)
        ).scalar(as_tuple=True)
        return total, int(before) if shown else -1
    if not query.where(Feature.index == index).exists():
        return query.count(), -1
    return query.count(), query.where(ahead).count()


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


def technical_label_of(feature_set_id: int, index: int) -> str:
    """The technical label the browser's table shows for feature `index` of a set ('' when it has none)."""
    row = (
        Feature.select(Feature.technical_label)
        .where((Feature.feature_set == feature_set_id) & (Feature.index == index))
        .first()
    )
    return row.technical_label if row is not None else ""


def labels_of(training_id: int, feature_index: int) -> list[FeatureLabel]:
    """Every label of a latent, newest first."""
    return list(
        FeatureLabel.select()
        .where((FeatureLabel.training == training_id) & (FeatureLabel.feature_index == feature_index))
        .order_by(FeatureLabel.created_at.desc(), FeatureLabel.id.desc())
    )


def density_histogram(feature_set_id: int, bins: int = 30) -> tuple[list[float], list[int]]:
    """Histogram of log10 density over the alive features (edges, counts); one raw scan, binned by numpy."""
    import numpy as np

    sql, params = (
        Feature.select(Feature.density).where((Feature.feature_set == feature_set_id) & (Feature.density > 0)).sql()
    )
    rows = database.execute_sql(sql, params).fetchall()
    if not rows:
        return [], []
    log_density = np.log10(np.fromiter((row[0] for row in rows), dtype=np.float64, count=len(rows)))
    lo, hi = float(log_density.min()), float(log_density.max())
    edges = np.linspace(lo, max(hi, lo + 1e-9 * bins), bins + 1)
    counts, _ = np.histogram(log_density, bins=edges)
    return [float(e) for e in edges], [int(c) for c in counts]
