"""The one-line result format every benchmark ends with: BENCH <name> <value> <unit> goal <op> <target> <ok|short>."""

from __future__ import annotations

import operator

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}


def bench_line(name: str, value: float, unit: str, op: str, target: float, digits: int = 3) -> str:
    ok = OPS[op](value, target)
    return f"BENCH {name} {value:.{digits}g} {unit} goal {op} {target:g} {'ok' if ok else 'short'}"
