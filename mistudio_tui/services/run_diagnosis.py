"""Likely causes and fixes of failed or unhealthy training runs, from the error, the log tail and the metrics."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DEAD_FRACTION_ALARM = 0.5


@dataclass(frozen=True)
class Diagnosis:
    """One likely cause of a problem and what to try next."""

    cause: str
    fix: str


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    diagnosis: Diagnosis


RULES = (
    _Rule(
        re.compile(
            r"out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|cannot allocate memory|"
            r"MemoryError|killed by SIGKILL",
            re.IGNORECASE,
        ),
        Diagnosis(
            "the device ran out of memory",
            "clone the run with a smaller batch size (half), a smaller width, or bf16; close other GPU jobs",
        ),
    ),
    _Rule(
        re.compile(r"\bnan\b|\binf\b|non-finite|not finite|overflow", re.IGNORECASE),
        Diagnosis(
            "the loss became NaN/inf (the optimisation diverged)",
            "clone the run with a lower learning rate (÷3 to ÷10), or fp32 instead of fp16/bf16",
        ),
    ),
    _Rule(
        re.compile(
            r"(FileNotFoundError|No such file|does not exist|missing).*(activation|shard|manifest|safetensors)|"
            r"(activation|shard|manifest|safetensors).*(FileNotFoundError|No such file|not found|missing)",
            re.IGNORECASE,
        ),
        Diagnosis(
            "the activation files are missing or incomplete",
            "re-extract the activation set (Models screen, e), then resume or clone the run",
        ),
    ),
    _Rule(
        re.compile(r"CUDA (is )?not available|no CUDA|Torch not compiled with CUDA|invalid device", re.IGNORECASE),
        Diagnosis("the requested device is not available here", "clone the run with device 'auto' or 'cpu'"),
    ),
)

DEAD_FEATURES = Diagnosis(
    "many features are dead (never fire)",
    "clone with AuxK (aux_k) enabled, or a smaller width; for TopK a larger k also helps",
)
DEAD_FEATURES_WITH_AUXK = Diagnosis(
    "many features are dead (never fire) despite AuxK",
    # measured (RESULTS.md, issue 16): lr x0.5 / x2 and AuxK x4 left the dead fraction as it was; a narrower SAE
    # halved it on the sample, whose activations hold fewer directions than its latents
    "clone with a smaller width (the activations may hold fewer directions than latents) or a larger k",
)


def diagnose(
    error: str | None,
    log_lines: Sequence[str] = (),
    dead_fraction: float | None = None,
    uses_auxk: bool = False,
) -> list[Diagnosis]:
    """The diagnoses whose pattern matches the error or the log tail, plus a dead-features warning; no duplicates."""
    text = "\n".join([error or "", *log_lines])
    found = [rule.diagnosis for rule in RULES if rule.pattern.search(text)]
    if dead_fraction is not None and dead_fraction >= DEAD_FRACTION_ALARM:
        found.append(DEAD_FEATURES_WITH_AUXK if uses_auxk else DEAD_FEATURES)
    return found
