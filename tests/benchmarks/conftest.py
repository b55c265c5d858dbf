"""Fixtures of the benchmark harness tests: the scripts under benchmarks/ run end to end on tiny inputs."""

from __future__ import annotations

from tests.unit.conftest import one_torch_thread

__all__ = ["one_torch_thread"]
