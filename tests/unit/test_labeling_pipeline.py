"""The labeling job end to end on a loopback chat server: labels, resume, progress, cost, abort, cancel."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.labeling.client import LabelingAborted
from mistudio_tui.labeling.pipeline import run_labeling
from mistudio_tui.labeling.types import FeatureRecord, LabelingSettings, LabelResult
from tests.chat_server import (
    ChatServer,
    FakeInterpreter,
    RecordedRequest,
    Reply,
    completion,
    error_body,
    make_record,
)

WORDS = ["apple", "river", "piano", "cloud", "tiger", "lemon"]


def records(words: list[str] = WORDS) -> list[FeatureRecord]:
    return [make_record(i, w) for i, w in enumerate(words)]


def settings(server: ChatServer, **overrides: Any) -> LabelingSettings:
    options: dict[str, Any] = {"base_url": server.base_url, "model": "loopback", "retry_base_s": 0.01}
    options.update(overrides)
    return LabelingSettings(**options)


def run(recs: Any, s: LabelingSettings, ctx: LocalContext | None = None, **kw: Any) -> tuple[dict, list, LocalContext]:
    ctx = ctx or LocalContext()
    results: list[LabelResult] = []
    summary = run_labeling(recs, s, ctx, results.append, **kw)
    return summary, results, ctx


def progress(ctx: LocalContext) -> list[p.Progress]:
    return [m for m in ctx.messages if isinstance(m, p.Progress)]


def test_each_feature_gets_its_own_label_and_usage_is_counted() -> None:
    with ChatServer(FakeInterpreter()) as srv:
        summary, results, ctx = run(records(), settings(srv, concurrency=3))
    assert sorted(r.index for r in results) == list(range(len(WORDS)))
    for r in results:
        assert r.error is None
        assert r.technical == f'the word "{WORDS[r.index]}"'
        assert WORDS[r.index] in r.semantic
        assert r.prompt_version == "default/1" and r.model == "loopback"
    server_prompt_tokens = sum(len(req.prompt.split()) for req in srv.requests)
    assert summary["prompt_tokens"] == sum(r.prompt_tokens for r in results) == server_prompt_tokens
    assert summary["completion_tokens"] == sum(len(r.raw_response.split()) for r in results)
    assert summary["usage_estimated"] is False
    assert summary["features_done"] == len(WORDS) and summary["features_failed"] == 0
    assert summary["cost"] is None
    last = progress(ctx)[-1]
    assert (last.done, last.total, last.unit) == (len(WORDS), len(WORDS), "features")


@pytest.mark.parametrize("style", ["json", "think"])
def test_other_answer_styles_land_on_the_right_feature(style: str) -> None:
    with ChatServer(FakeInterpreter(style=style)) as srv:
        _, results, _ = run(records(WORDS[:3]), settings(srv))
    assert {r.index: r.technical for r in results} == {i: f'the word "{w}"' for i, w in enumerate(WORDS[:3])}


def test_cost_and_tokens_are_reported_live_and_in_the_summary() -> None:
    with ChatServer(FakeInterpreter(usage=False)) as srv:
        s = settings(srv, price_prompt_per_million=2.5, price_completion_per_million=10.0)
        summary, _, ctx = run(records(), s)
    expected = (summary["prompt_tokens"] * 2.5 + summary["completion_tokens"] * 10.0) / 1e6
    assert summary["cost"] == pytest.approx(expected) and summary["cost"] > 0
    assert summary["usage_estimated"] is True
    assert sum("token counts and cost are estimates" in line for line in ctx.logs) == 1
    texts = [m.text for m in progress(ctx)[1:]]
    assert all("$" in t and "tokens" in t for t in texts)
    assert texts[-1].startswith(f"{len(WORDS)} labeled · 0 failed · ~")


def test_features_in_skip_are_not_requested_again() -> None:
    with ChatServer(FakeInterpreter()) as srv:
        summary, results, ctx = run(records(), settings(srv), skip={1, 3})
    assert sorted(r.index for r in results) == [0, 2, 4, 5]
    assert not any("river" in req.prompt or "cloud" in req.prompt for req in srv.requests)
    assert summary["features_skipped"] == 2 and summary["features_done"] == 4
    assert progress(ctx)[-1].done == len(WORDS)


def test_a_generator_of_records_is_consumed_lazily() -> None:
    with ChatServer(FakeInterpreter()) as srv:
        summary, results, ctx = run((r for r in records()), settings(srv, concurrency=1))
    assert len(results) == len(WORDS) and summary["features_total"] == len(WORDS)
    assert progress(ctx)[-1].total is None


def test_one_failing_feature_does_not_stop_the_others() -> None:
    explainer = FakeInterpreter()

    def responder(request: RecordedRequest) -> Reply:
        if "<<river>>" in request.user:
            return Reply(400, error_body("prompt rejected by the content filter"))
        if "<<piano>>" in request.user:
            return Reply(body=completion("I would rather not say."))
        return explainer(request)

    with ChatServer(responder) as srv:
        summary, results, ctx = run(records(), settings(srv))
    by_index = {r.index: r for r in results}
    assert "HTTP 400" in by_index[1].error and "content filter" in by_index[1].error
    assert by_index[1].technical == ""
    assert by_index[2].error.startswith("could not read the model's answer: no NAME: or DESCRIPTION:")
    assert by_index[2].raw_response == "I would rather not say."
    assert all(by_index[i].ok for i in (0, 3, 4, 5))
    assert summary["features_failed"] == 2 and summary["features_done"] == 4
    assert any(line.startswith("feature 1: ") for line in ctx.logs)


@pytest.mark.parametrize(
    "failure",
    [
        Reply(401, error_body("Incorrect API key provided: sk-abc***xyz.", code="invalid_api_key")),
        Reply(429, error_body("You exceeded your current quota.", "insufficient_quota", "insufficient_quota")),
    ],
    ids=["401", "quota"],
)
def test_auth_or_quota_error_stops_the_whole_job_with_the_provider_message(failure: Reply) -> None:
    explainer = FakeInterpreter()
    answered = []

    def responder(request: RecordedRequest) -> Reply:
        if len(answered) < 2:
            answered.append(request)
            return explainer(request)
        return failure

    many = records(WORDS * 4)
    with ChatServer(responder) as srv:
        results: list[LabelResult] = []
        with pytest.raises(LabelingAborted) as info:
            run_labeling(many, settings(srv, concurrency=1), LocalContext(), results.append)
    message = str(info.value)
    assert f"HTTP {failure.status}" in message
    assert failure.body["error"]["message"].split(":")[0] in message  # type: ignore[index]
    assert len(results) == 2 and all(r.ok for r in results)  # nothing after the stop, nothing half-labeled
    assert len(srv.requests) == 3
    assert info.value.summary is not None and info.value.summary["features_done"] == 2


def test_the_api_key_never_reaches_logs_results_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-unit-test-SECRET-5f1c9a7e2b"
    monkeypatch.setenv("LOOPBACK_KEY", key)
    calls = []

    def leaky(request: RecordedRequest) -> Reply:
        calls.append(request)
        auth = request.headers.get("authorization", "")
        n = len(calls)
        if n == 1:
            return Reply(400, error_body(f"bad request from {auth}"))
        if n == 2:
            return Reply(500, error_body(f"upstream echoed key {auth.removeprefix('Bearer ')}"))
        if n == 3:
            return Reply(body=completion(f"NAME: echo\nDESCRIPTION: your key is {auth}"))
        return Reply(401, error_body(f"Invalid key {auth.removeprefix('Bearer ')}"))

    ctx = LocalContext()
    results: list[LabelResult] = []
    with ChatServer(leaky) as srv:
        s = settings(srv, api_key_env="LOOPBACK_KEY", concurrency=1, max_retries=1)
        with pytest.raises(LabelingAborted) as info:
            run_labeling(records(), s, ctx, results.append)
    assert calls[0].headers["authorization"] == f"Bearer {key}"  # the key was really in play
    recorded = repr(ctx.messages) + repr(results) + str(info.value) + repr(info.value.args) + repr(info.value.summary)
    assert key not in recorded
    assert "[REDACTED]" in recorded
    assert key not in repr(s) and key not in repr(s.to_dict())


def test_cancelling_stops_promptly_and_abandons_outstanding_requests() -> None:
    def slow(request: RecordedRequest) -> Reply:
        return Reply(body=completion("NAME: x\nDESCRIPTION: y."), delay_s=0.3)

    ctx = LocalContext(cancel_after=2)  # the "starting" report, then the first result
    results: list[LabelResult] = []
    with ChatServer(slow) as srv:
        with pytest.raises(JobCancelled):
            run_labeling(records(WORDS * 5), settings(srv, concurrency=2), ctx, results.append)
        sent = len(srv.requests)
    assert 1 <= len(results) < len(WORDS) * 5
    assert sent <= len(results) + 2 * 2  # at most the window of in-flight work was started


def test_scoring_ranks_right_explanations_above_a_wrong_one() -> None:
    with ChatServer(FakeInterpreter(claim="apple")) as srv:
        s = settings(srv, score=True, score_methods=("detection",), score_examples=4)
        summary, results, _ = run(records(WORDS[:3]), s)
    by_index = {r.index: r for r in results}
    assert by_index[0].score == 1.0  # "apple" is right for feature 0 only
    assert by_index[1].score == 0.5 and by_index[2].score == 0.5
    assert by_index[1].score_details["detection"]["true_positive_rate"] == 0.0
    assert summary["features_scored"] == 3 and summary["mean_score"] == pytest.approx(2 / 3)
    explain_tokens = sum(len(r.raw_response.split()) for r in results)
    assert summary["completion_tokens"] > explain_tokens  # scoring requests are counted too


def test_bad_template_fails_before_any_request() -> None:
    with ChatServer(FakeInterpreter()) as srv:
        with pytest.raises(ValueError, match="unknown prompt template 'nope'"):
            run(records(), settings(srv, template="nope"))
        assert srv.requests == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("concurrency", 0, "concurrency=0"),
        ("base_url", "localhost:8000", "not an http"),
        ("model", " ", "model is empty"),
        ("score_methods", ("simulation",), "score_methods"),
        ("requests_per_minute", -1, "requests_per_minute"),
        ("price_prompt_per_million", -2.0, "price_prompt_per_million"),
    ],
)
def test_settings_are_validated_with_the_field_named(field: str, value: Any, message: str) -> None:
    options: dict[str, Any] = {"base_url": "http://localhost:8000/v1", "model": "m", field: value}
    with pytest.raises(ValueError, match=message):
        LabelingSettings(**options)


def test_settings_round_trip_and_reject_unknown_fields() -> None:
    s = LabelingSettings(base_url="http://h/v1", model="m", score=True, score_methods=("detection", "fuzzing"))
    assert LabelingSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match=r"unknown labeling setting.*api_key"):
        LabelingSettings.from_dict({**s.to_dict(), "api_key": "x"})


def test_labeling_imports_neither_torch_nor_textual() -> None:
    code = (
        "import sys, mistudio_tui.labeling.pipeline, mistudio_tui.labeling.scoring; "
        "print(sorted(m for m in ('torch', 'textual', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
