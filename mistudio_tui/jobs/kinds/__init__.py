"""The built-in job kinds: worker entry points and their parent-side hooks."""

from __future__ import annotations

from mistudio_tui.jobs import finishers as f
from mistudio_tui.jobs.kinds import sae, sweep, train  # noqa: F401 - their modules register those kinds
from mistudio_tui.jobs.registry import JobKind, register

TASKS = "mistudio_tui.jobs.tasks"

register(JobKind("diag.count", f"{TASKS}.diagnostics:count", title="Diagnostic count", cancel_grace_s=3.0))
register(JobKind("diag.hang", f"{TASKS}.diagnostics:hang", title="Diagnostic hang", cancel_grace_s=1.0))
register(JobKind("diag.flood", f"{TASKS}.diagnostics:flood", title="Diagnostic flood"))

register(JobKind("sample", f"{TASKS}.sample:run", title="Build offline sample", finish=f.finish_sample))
register(JobKind("ingest", f"{TASKS}.datasets:ingest", title="Ingest dataset", finish=f.apply_resource_fields))
register(JobKind("tokenize", f"{TASKS}.datasets:tokenize", title="Tokenize", finish=f.apply_resource_fields))
register(JobKind("model.add", f"{TASKS}.models:add", title="Add model", finish=f.apply_resource_fields))
register(
    JobKind(
        "activations.extract",
        f"{TASKS}.activations:extract",
        title="Extract activations",
        finish=f.apply_resource_fields,
    )
)
register(
    JobKind(
        "activations.import",
        f"{TASKS}.activations:import_set",
        title="Import activations",
        finish=f.apply_resource_fields,
    )
)
register(
    JobKind(
        "activations.synth",
        f"{TASKS}.activations:synth",
        title="Synthesize activations",
        finish=f.apply_resource_fields,
    )
)
register(
    JobKind(
        "features.extract",
        f"{TASKS}.features:extract",
        title="Extract features",
        finish=f.finish_features,
    )
)
register(
    JobKind(
        "label",
        f"{TASKS}.label:run",
        title="Auto-label features",
        cancel_grace_s=10.0,
        artifact=f.label_artifact,
        finish=f.finish_labeling,
    )
)
