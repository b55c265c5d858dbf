"""What a delete takes with it: count cascading rows (to show the user first), then delete rows and files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peewee import Field

from mistudio_tui.db.models import BaseModel, database
from mistudio_tui.db.ownership import owned_by

NOUNS = {
    "dataset": ("dataset", "datasets"),
    "language_model": ("model", "models"),
    "tokenization": ("tokenization", "tokenizations"),
    "activation_set": ("activation set", "activation sets"),
    "training": ("training", "trainings"),
    "training_metric": ("metric point", "metric points"),
    "feature_set": ("feature set", "feature sets"),
    "feature": ("feature", "features"),
    "feature_label": ("label", "labels"),
    "labeling_job": ("labeling run", "labeling runs"),
    "steering_preset": ("steering preset", "steering presets"),
}


def noun(table: str, count: int) -> str:
    """'3 trainings', '1 feature set'."""
    one, many = NOUNS.get(table, (table.replace("_", " "), table.replace("_", " ") + "s"))
    return f"{count:,} {one if count == 1 else many}"


@dataclass
class CascadePlan:
    """The rows (by table) and folders a delete removes, and the folders under the home it leaves in place because
    their row did not create them (no matching ownership marker, see db.ownership)."""

    root: BaseModel
    counts: dict[str, int] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    def kept_text(self) -> str:
        """'left in place (…): paths' for the folders a delete does not remove, or ''."""
        if not self.kept:
            return ""
        shown = ", ".join(str(p) for p in self.kept[:3])
        more = f" and {len(self.kept) - 3} more" if len(self.kept) > 3 else ""
        return f"left in place (not created by the rows deleted): {shown}{more}"

    def describe(self) -> str:
        """A one-paragraph statement for a confirmation dialog."""
        name = getattr(self.root, "name", None) or f"#{self.root.id}"
        what = NOUNS.get(self.root._meta.table_name, ("item", "items"))[0]
        if not self.counts:
            text = f"Delete {what} '{name}'? Nothing else depends on it."
        else:
            text = f"Delete {what} '{name}'? This also deletes {', '.join(noun(t, n) for t, n in self.counts.items())}."
        return text + (f" Folders {self.kept_text()}." if self.kept else "")

    def done(self) -> str:
        """What was deleted, after the fact."""
        name = getattr(self.root, "name", None) or f"#{self.root.id}"
        what = NOUNS.get(self.root._meta.table_name, ("item", "items"))[0]
        parts = ", ".join(noun(t, n) for t, n in self.counts.items())
        text = f"deleted {what} '{name}'" + (f" and {parts}" if parts else "")
        return text + (f"; folders {self.kept_text()}" if self.kept else "")


def _cascading_backrefs(model: type[BaseModel]) -> list[tuple[Field[Any], type[BaseModel]]]:
    return [(fk, rel) for fk, rel in model._meta.backrefs.items() if (fk.on_delete or "").upper() == "CASCADE"]


def plan_delete(instance: BaseModel, home: Path | None = None) -> CascadePlan:
    """Walk ON DELETE CASCADE foreign keys from `instance`; collect counts and owned folders under `home`."""
    plan = CascadePlan(instance)
    _collect_paths(instance, plan, home)
    seen: dict[str, set[int]] = {}
    frontier: list[tuple[type[BaseModel], list[int]]] = [(type(instance), [instance.id])]
    while frontier:
        model, ids = frontier.pop(0)
        for fk, rel in _cascading_backrefs(model):
            table = rel._meta.table_name
            known = seen.setdefault(table, set())
            child_ids = [row.id for row in rel.select(rel.id).where(fk.in_(ids)) if row.id not in known]
            if not child_ids:
                continue
            known.update(child_ids)
            plan.counts[table] = plan.counts.get(table, 0) + len(child_ids)
            if "path" in rel._meta.fields:
                fields = rel._meta.fields
                columns = [rel.id, fields["path"]] + ([fields["created_at"]] if "created_at" in fields else [])
                for row in rel.select(*columns).where(rel.id.in_(child_ids)):
                    _collect_paths(row, plan, home)
            frontier.append((rel, child_ids))
    return plan


def _collect_paths(row: BaseModel, plan: CascadePlan, home: Path | None) -> None:
    raw = getattr(row, "path", "") or ""
    if not raw or home is None:
        return
    path = Path(raw).resolve()
    try:
        path.relative_to(Path(home).resolve())
    except ValueError:
        return  # never delete files the user registered in place outside the home
    if owned_by(path, row):
        plan.paths.append(path)
    elif path.exists():  # another row's, or one the studio never created for this row: not ours to delete
        plan.kept.append(path)


def execute_delete(plan: CascadePlan) -> None:
    """Delete the root row (the database cascades) in one transaction, then its folders."""
    with database.atomic():
        plan.root.delete_instance()
    for path in plan.paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
