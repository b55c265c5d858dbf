"""A stand-in for the inference session in UI tests: answers the steering ops with fixed, labelled data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PIECES = {"normal": [" the", " cat", " sat"], "steered:0": [" the", " cat", " sat"], "steered:4": [" dog", " dog"]}


class FakeStream:
    """Yields the partials of PIECES for the requested variants, then the final result."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.cancelled = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        strengths = self.params.get("strengths") or [self.params["interventions"][0]["strength"]]
        variants = ["normal", *[f"steered:{s:g}" for s in strengths]]
        for variant in variants:
            for token in PIECES.get(variant, [" ?"]):
                yield {"variant": variant, "token": token}
        feature = self.params["interventions"][0]["feature"]
        yield {
            "prompt": self.params["prompt"],
            "texts": {v: "".join(PIECES.get(v, [" ?"])) for v in variants},
            "tokens": {v: PIECES.get(v, [" ?"]) for v in variants},
            "scales": {feature: {"max_act": 2.5, "relative_norm": 0.4, "added_norm": 1.0, "typical_norm": 2.5}},
        }

    def cancel(self) -> None:
        self.cancelled = True


class FakeSession:
    """Records calls; `stream` and `call` answer like the real worker's ops."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def stream(self, op: str, **params: Any) -> FakeStream:
        self.calls.append((op, params))
        return FakeStream(params)

    def call(self, op: str, timeout: float | None = 120, **params: Any) -> dict[str, Any]:
        self.calls.append((op, params))
        if op == "ablate":
            return {
                "tokens": ["a", "b"],
                "loss_clean": 2.0,
                "loss_ablated": 2.5,
                "loss_delta": 0.5,
                "n_active": 1,
                "promoted": [[" dog", 7, 0.75]],
                "suppressed": [[" cat", 8, -0.5]],
                "per_position_loss_delta": [0.5],
            }
        if op == "cooccurrence":
            feats = params["features"]
            return {
                "features": feats,
                "tokens_seen": 9,
                "fired": [3 for _ in feats],
                "counts": [[3 if i == j else 1 for j in feats] for i in feats],
                "jaccard": [[1.0 if i == j else 0.2 for j in feats] for i in feats],
                "partners": {
                    f: [{"id": 11, "count": 2, "jaccard": 0.5, "conditional": 0.6, "error": 0}] for f in feats
                },
            }
        if op == "decoder_map":
            return {"method": "pca", "coords": [[float(i % 4), float(i // 4)] for i in range(12)]}
        raise AssertionError(f"unexpected op {op}")

    def close(self) -> None:
        self.closed = True
