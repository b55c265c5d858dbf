"""Detection and fuzzing scoring: item construction, metrics, and scores from a loopback scorer model."""

from __future__ import annotations

import random
import re

from mistudio_tui.labeling.client import ChatClient
from mistudio_tui.labeling.prompts import PromptTemplate, resolve_template
from mistudio_tui.labeling.scoring import (
    classification_metrics,
    detection_items,
    fuzzing_items,
    score_explanation,
)
from mistudio_tui.labeling.types import LabelingSettings
from tests.chat_server import ChatServer, FakeInterpreter, RecordedRequest, Reply, completion, make_record


def test_metrics_follow_their_definitions() -> None:
    labels = [True, True, True, False, False]
    predictions = [True, False, True, False, True]
    m = classification_metrics(labels, predictions)
    tpr, tnr = 2 / 3, 1 / 2
    assert m["true_positive_rate"] == tpr and m["true_negative_rate"] == tnr
    assert m["balanced_accuracy"] == (tpr + tnr) / 2
    assert m["accuracy"] == 3 / 5
    assert m["precision"] == 2 / 3
    assert classification_metrics([True, True], [True, False])["balanced_accuracy"] is None


def test_detection_items_are_balanced_unmarked_shuffled_and_seeded() -> None:
    record = make_record(0, "apple", n_holdout=8)
    items = detection_items(record, 5, 64, random.Random(1))
    assert sum(i.label for i in items) == 5 and len(items) == 10
    assert all(("apple" in i.text) == i.label for i in items)
    assert not any("<<" in i.text for i in items)
    again = detection_items(record, 5, 64, random.Random(1))
    other = detection_items(record, 5, 64, random.Random(2))
    assert [i.text for i in items] == [i.text for i in again]
    assert [i.text for i in items] != [i.text for i in other]


def test_fuzzing_items_mark_real_or_decoy_tokens() -> None:
    record = make_record(0, "river", n_holdout=8)
    items = fuzzing_items(record, 8, 64, random.Random(0))
    assert len(items) == 8 and sum(i.label for i in items) == 4
    for item in items:
        spans = re.findall(r"<<(.*?)>>", item.text)
        assert spans
        if item.label:
            assert all(set(s.split()) == {"river"} for s in spans)
        else:
            assert not any("river" in s for s in spans)
            assert sum(len(s.split()) for s in spans) == 2  # as many decoys as real activating tokens


def settings(**overrides: object) -> LabelingSettings:
    base: dict[str, object] = {
        "base_url": "http://127.0.0.1:1",
        "model": "m",
        "score": True,
        "retry_base_s": 0.01,
    }
    base.update(overrides)
    return LabelingSettings(**base)  # type: ignore[arg-type]


def templates() -> dict[str, PromptTemplate]:
    return {m: resolve_template(m, m) for m in ("detection", "fuzzing")}


async def test_a_right_explanation_scores_1_and_a_wrong_one_scores_chance() -> None:
    record = make_record(3, "piano", n_holdout=6)
    s = settings(score_methods=("detection", "fuzzing"), score_examples=6, score_batch_size=4)
    with ChatServer(FakeInterpreter()) as srv:
        async with ChatClient(srv.base_url, "m") as client:
            right = await score_explanation(client, record, 'the word "piano" — Fires on "piano".', s, templates())
            n_right = len(srv.requests)
            wrong = await score_explanation(client, record, 'the word "violin" — Fires on "violin".', s, templates())
    assert right.score == 1.0
    assert right.details["detection"]["balanced_accuracy"] == 1.0
    assert right.details["fuzzing"]["balanced_accuracy"] == 1.0
    assert wrong.details["detection"]["true_positive_rate"] == 0.0
    assert wrong.details["detection"]["true_negative_rate"] == 1.0
    assert wrong.score == 0.5
    # 12 detection items in batches of 4, 6 fuzzing items in batches of 4
    assert n_right == 3 + 2
    assert right.prompt_tokens > 0 and right.completion_tokens > 0
    assert right.details["detection"]["prompt_version"] == "detection/1"
    assert right.details["detection"]["labels"] == [int(v) for v in right.details["detection"]["predictions"]]


async def test_unparseable_scorer_answer_and_missing_negatives_become_errors() -> None:
    record = make_record(1, "cloud")

    def vague(request: RecordedRequest) -> Reply:
        return Reply(body=completion("Some of them fit, I think."))

    with ChatServer(vague) as srv:
        async with ChatClient(srv.base_url, "m") as client:
            outcome = await score_explanation(client, record, 'the word "cloud"', settings(), templates())
            no_negatives = make_record(2, "rain", n_holdout=3)
            no_negatives.holdout_non_activating.clear()
            missing = await score_explanation(client, no_negatives, 'the word "rain"', settings(), templates())
    assert outcome.score is None
    assert "detection scoring failed: expected a list of" in outcome.details["detection"]["error"]
    assert outcome.completion_tokens > 0  # the failed attempt still cost tokens
    assert missing.score is None
    assert "lacks held-out examples" in missing.details["detection"]["error"]
