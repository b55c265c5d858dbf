"""JobParams: a kind's typed parameters round-trip through the job row's JSON and refuse what does not fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mistudio_tui.jobs.params import JobParams, ParamsError
from mistudio_tui.ml.sae.config import SAEConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source:
    dir: Path
    hook: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExampleParams(JobParams):
    kind = "example"
    out_dir: Path
    source: Source
    sae: SAEConfig
    steps: int = 10
    lr: float | None = None
    tags: tuple[str, ...] = ()
    extra: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def example() -> ExampleParams:
    return ExampleParams(
        out_dir=Path("/tmp/run"), source=Source(dir=Path("/tmp/acts")), sae=SAEConfig(d_in=8), tags=("a", "b")
    )


def test_round_trip_keeps_the_row_layout():
    params = example()
    row = params.to_json()
    assert row["out_dir"] == "/tmp/run" and row["source"] == {"dir": "/tmp/acts", "hook": None}
    assert row["sae"]["d_in"] == 8 and row["tags"] == ["a", "b"] and "lr" not in row
    assert ExampleParams.from_json(row) == params


def test_ints_read_as_floats_and_none_stays_none():
    row = example().to_json() | {"lr": 3}
    assert ExampleParams.from_json(row).lr == 3.0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"steps": "ten"}, "example.steps"),
        ({"bogus": 1}, "bogus"),
        ({"source": {"dir": 5}}, "example.source.dir"),
        ({"tags": "ab"}, "example.tags"),
        ({"steps": True}, "example.steps"),
    ],
)
def test_wrong_fields_are_named(change, named):
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        ExampleParams.from_json(example().to_json() | change)


def test_validation_runs_on_the_way_back():
    with pytest.raises(ValueError, match="steps must be positive"):
        ExampleParams.from_json(example().to_json() | {"steps": 0})


def test_a_missing_required_field_is_refused():
    row = example().to_json()
    del row["out_dir"]
    with pytest.raises(ParamsError, match="out_dir"):
        ExampleParams.from_json(row)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OtherParams(JobParams):
    kind = "other"
    n: int = 1


def test_a_kind_stores_its_own_class_and_validates_dicts():
    from mistudio_tui.jobs.registry import JobKind

    kind = JobKind("example", "x:y", params=ExampleParams)
    assert kind.row_params(example()) == example().to_json()
    with pytest.raises(TypeError, match="takes ExampleParams, not OtherParams"):
        kind.row_params(OtherParams())
    with pytest.raises(ParamsError, match="bogus"):
        kind.row_params(example().to_json() | {"bogus": 1})
    assert JobKind("plain", "x:y").row_params({"a": 1}) == {"a": 1}


def test_a_nested_config_missing_a_required_field_is_named():
    row = example().to_json()
    del row["sae"]["d_in"]
    with pytest.raises(ParamsError, match=r"example\.sae"):
        ExampleParams.from_json(row)
