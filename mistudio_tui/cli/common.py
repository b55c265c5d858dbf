"""Helpers the noun modules share: list/show/delete of a table, running a JobSpec, count arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.output import CliError, emit, format_table, row_dict
from mistudio_tui.db.cascade import execute_delete, plan_delete
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import BaseModel
from mistudio_tui.db.states import RunState
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.studio import Studio
from mistudio_tui.units import parse_count

M = TypeVar("M", bound=BaseModel)


def count_arg(what: str) -> Callable[[str], int]:
    """An argparse type for counts like 100k or 1e6 (argparse names the option itself)."""

    def parse(text: str) -> int:
        try:
            return parse_count(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None

    return parse


def int_arg(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """An argparse type for a whole number in [low, high] (argparse names the option itself)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low:,} to {high:,}" if high is not None else f"{low:,} or more"
            raise argparse.ArgumentTypeError(f"{value:,} is out of range; expected {span}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def run_spec(
    args: argparse.Namespace,
    studio: Studio,
    spec: JobSpec[Any],
    show: Callable[[Any], dict[str, Any]],  # takes the row of spec.resource's model
    tracker: Any = None,
) -> None:
    """Run the job of `spec` (its metrics also to `tracker`), then print the resource it made (its `id` first)."""
    job = run_job(studio, spec.kind, spec.params, title=spec.title, resource=spec.resource, tracker=tracker)
    resource = type(spec.resource).get_by_id(spec.resource.id) if spec.resource is not None else None
    data = show(resource) if resource is not None else {}
    data = {"id": resource.id if resource is not None else None, **data, "job": job.id}
    emit(args.json, data, lambda: _human(data))


def _human(data: dict[str, Any]) -> str:
    return "\n".join(f"{k:>18}: {v}" for k, v in data.items() if not isinstance(v, (dict, list)))


def add_list_show_delete(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    model: type[M],
    noun: str,
    columns: Sequence[tuple[str, str]],
    summary: Callable[[M], dict[str, Any]],
    detail: Callable[[M], dict[str, Any]] | None = None,
) -> None:
    """Add `list`, `show ID|NAME` and `delete ID|NAME [--yes]` for `model`."""
    p = verbs.add_parser("list", help=f"list {noun}s", parents=[common])
    p.set_defaults(func=lambda a, s: _list(a, model, columns, summary))
    p = verbs.add_parser("show", help=f"show one {noun}", parents=[common])
    p.add_argument("ref", metavar=noun.upper().replace(" ", "_"), help="id or name")
    p.set_defaults(func=lambda a, s: _show(a, model, detail or summary))
    p = verbs.add_parser("delete", help=f"delete a {noun} (and what depends on it)", parents=[common])
    p.add_argument("ref", metavar=noun.upper().replace(" ", "_"), help="id or name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=lambda a, s: _delete(a, s, model))


def _list(
    args: argparse.Namespace,
    model: type[M],
    columns: Sequence[tuple[str, str]],
    summary: Callable[[M], dict[str, Any]],
) -> None:
    rows = [summary(r) for r in model.select().order_by(model.id)]
    emit(args.json, rows, lambda: format_table(rows, columns))


def _show(args: argparse.Namespace, model: type[M], detail: Callable[[M], dict[str, Any]]) -> None:
    row = resolve(model, args.ref)
    data = detail(row)
    emit(args.json, data, lambda: _human_detail(data))


def _human_detail(data: dict[str, Any]) -> str:
    import json

    lines = []
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, default=str)
            value = text if len(text) < 400 else text[:400] + "…"
        lines.append(f"{key:>18}: {value}")
    return "\n".join(lines)


def _delete(args: argparse.Namespace, studio: Studio, model: type[BaseModel]) -> None:
    row = resolve(model, args.ref)
    status = getattr(row, "status", "")
    if status in RunState.ACTIVE:
        raise CliError(f"'{getattr(row, 'name', row.id)}' is {status}; cancel its job first")
    plan = plan_delete(row, studio.paths.home)
    message = plan.describe()
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            raise CliError(f"{message} Re-run with --yes to confirm.")
        answer = input(f"{message} [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise CliError("not deleted")
    execute_delete(plan)
    emit(args.json, {"id": row.id, "deleted": True, "cascade": plan.counts}, plan.done())


def basic(row: BaseModel, fields: Sequence[str]) -> dict[str, Any]:
    return row_dict(row, fields)
