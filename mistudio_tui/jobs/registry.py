"""Job kinds: the worker entry point (a dotted path, so the UI never imports it) and parent-side hooks.

Parent-side hooks run in the runner's thread inside a transaction; they turn results and metric rows into
database rows and never import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mistudio_tui.db.models import Job
from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.params import JobParams

FinishHook = Callable[[Job, str, dict[str, Any]], None]
MetricsHook = Callable[[Job, list[dict[str, Any]]], None]
ArtifactHook = Callable[[Job, p.Artifact], None]
StartHook = Callable[[Job], None]


def _noop(*_args: Any) -> None:
    return None


@dataclass(frozen=True)
class JobKind:
    """What a job kind runs (`entry` = 'module:function', called as fn(params, ctx) -> dict) and its hooks."""

    name: str
    entry: str
    title: str = ""
    cancel_grace_s: float = 15.0
    finish: FinishHook = _noop
    metrics: MetricsHook = _noop
    artifact: ArtifactHook = _noop
    start: StartHook = _noop
    # The kind's typed parameters: submit() refuses others, and the worker's entry receives an instance. None: a
    # plain dict (kinds not yet converted).
    params: type[JobParams] | None = None

    def row_params(self, params: JobParams | dict[str, Any]) -> dict[str, Any]:
        """The JSON the job row stores for `params`, checked against this kind's class (a dict is validated by it)."""
        if isinstance(params, JobParams):
            if self.params is not None and not isinstance(params, self.params):
                raise TypeError(f"job kind {self.name!r} takes {self.params.__name__}, not {type(params).__name__}")
            return params.to_json()
        if self.params is not None:
            self.params.from_json(params)  # refuse now, in the caller, what the worker would refuse later
        return dict(params)

    def on_finish(self, job: Job, status: str, result: dict[str, Any]) -> None:
        self.finish(job, status, result)

    def on_metrics(self, job: Job, rows: list[dict[str, Any]]) -> None:
        self.metrics(job, rows)

    def on_artifact(self, job: Job, artifact: p.Artifact) -> None:
        self.artifact(job, artifact)

    def before_start(self, job: Job) -> None:
        self.start(job)


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The registered kind `name` (kinds register when mistudio_tui.jobs.kinds is imported)."""
    if not _KINDS:
        import mistudio_tui.jobs.kinds  # noqa: F401 - registers the built-in kinds
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}") from None


def all_kinds() -> list[JobKind]:
    if not _KINDS:
        import mistudio_tui.jobs.kinds  # noqa: F401
    return list(_KINDS.values())
