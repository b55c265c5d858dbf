"""The built-in job kinds. Each module of this package is one kind (or a group of related kinds): its typed
parameters (`jobs.params.JobParams`), its parent-side hooks and its registration; the worker entry points it names
live in `jobs/tasks/`. Importing the package registers them all."""

from __future__ import annotations

from mistudio_tui.jobs.kinds import (  # noqa: F401 - each module registers its kinds
    activations,
    datasets,
    diagnostics,
    features,
    label,
    models,
    sae,
    sample,
    sweep,
    train,
)
