"""A labeling run whose every request failed is a failed run (non-zero exit), not a completed one."""

from __future__ import annotations

import pytest

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.labeling.client import LabelingAborted
from mistudio_tui.labeling.pipeline import run_labeling
from mistudio_tui.labeling.types import LabelingSettings, LabelResult
from tests.chat_server import ChatServer, FakeInterpreter, RecordedRequest, Reply, error_body, make_record


def test_every_request_failing_fails_the_run_and_still_reports_each_feature() -> None:
    def refuse(request: RecordedRequest) -> Reply:
        return Reply(400, error_body("prompt rejected by the content filter"))

    results: list[LabelResult] = []
    with ChatServer(refuse) as srv:
        s = LabelingSettings(base_url=srv.base_url, model="loopback", retry_base_s=0.01)
        with pytest.raises(LabelingAborted, match=r"every request failed \(3 features\).*content filter") as info:
            run_labeling([make_record(i, w) for i, w in enumerate(["a", "b", "c"])], s, LocalContext(), results.append)
    assert sorted(r.index for r in results) == [0, 1, 2] and all(r.error for r in results)  # each one was stored
    assert info.value.summary["features_failed"] == 3 and info.value.summary["features_done"] == 0


def test_a_run_with_some_labels_still_completes() -> None:
    explainer = FakeInterpreter()

    def some_fail(request: RecordedRequest) -> Reply:
        return Reply(400, error_body("no")) if "<<b>>" in request.user else explainer(request)

    results: list[LabelResult] = []
    with ChatServer(some_fail) as srv:
        s = LabelingSettings(base_url=srv.base_url, model="loopback", retry_base_s=0.01)
        summary = run_labeling([make_record(i, w) for i, w in enumerate("abc")], s, LocalContext(), results.append)
    assert summary["features_done"] == 2 and summary["features_failed"] == 1
