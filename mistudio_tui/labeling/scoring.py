"""Scoring explanations: can a model tell held-out activating text (detection) or true marks (fuzzing)?"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from mistudio_tui.labeling.client import ChatClient, RequestFailed
from mistudio_tui.labeling.parsing import ParseError, parse_judgements
from mistudio_tui.labeling.prompts import (
    PromptTemplate,
    crop,
    feature_max_activation,
    normalise_activations,
    render_tokens,
)
from mistudio_tui.labeling.types import Example, FeatureRecord, LabelingSettings


@dataclass(frozen=True)
class ScoreItem:
    """One excerpt shown to the scorer and the answer it should give (True = fires / correctly marked)."""

    text: str
    label: bool


@dataclass
class ScoreOutcome:
    """Scores of one feature by each method, and the tokens the scoring requests cost."""

    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False

    @property
    def score(self) -> float | None:
        """The headline score: detection's balanced accuracy, else fuzzing's."""
        for method in ("detection", "fuzzing"):
            value: float | None = self.details.get(method, {}).get("balanced_accuracy")
            if value is not None:
                return value
        return None


def _sample(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    return list(examples) if len(examples) <= n else rng.sample(examples, n)


def detection_items(record: FeatureRecord, n_per_class: int, size: int, rng: random.Random) -> list[ScoreItem]:
    """Held-out activating and non-activating excerpts (unmarked), shuffled."""
    activating = _sample([e for e in record.holdout_activating if e.max_activation > 0], n_per_class, rng)
    quiet = _sample(list(record.holdout_non_activating), n_per_class, rng)
    items = [ScoreItem(render_tokens(crop(e, size).tokens), True) for e in activating]
    items += [ScoreItem(render_tokens(crop(e, size, rng).tokens), False) for e in quiet]
    rng.shuffle(items)
    return items


def fuzzing_items(record: FeatureRecord, n: int, size: int, rng: random.Random) -> list[ScoreItem]:
    """Held-out activating excerpts, half with their real activating tokens marked, half with wrong ones."""
    activating = [e for e in record.holdout_activating if e.max_activation > 0]
    examples = [crop(e, size) for e in _sample(activating, n, rng)]
    scale = feature_max_activation(record, examples)
    rng.shuffle(examples)
    items = []
    for position, example in enumerate(examples):
        real = [level >= 1 for level in normalise_activations(example.activations, scale)]
        quiet = [i for i, is_marked in enumerate(real) if not is_marked]
        n_marked = sum(real)
        if position % 2 == 1 and 0 < n_marked <= len(quiet):
            wrong = set(rng.sample(quiet, n_marked))
            decoy = [i in wrong for i in range(len(real))]
            items.append(ScoreItem(render_tokens(example.tokens, decoy), False))
        else:
            items.append(ScoreItem(render_tokens(example.tokens, real), True))
    rng.shuffle(items)
    return items


def classification_metrics(labels: list[bool], predictions: list[bool]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean of true-positive and true-negative rates) and their counts."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions; expected equal lengths")
    tp = sum(1 for y, p in zip(labels, predictions, strict=True) if y and p)
    tn = sum(1 for y, p in zip(labels, predictions, strict=True) if not y and not p)
    positives, negatives = sum(labels), len(labels) - sum(labels)
    tpr = tp / positives if positives else None
    tnr = tn / negatives if negatives else None
    predicted_positive = sum(predictions)
    return {
        "accuracy": (tp + tn) / len(labels) if labels else None,
        "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
        "true_positive_rate": tpr,
        "true_negative_rate": tnr,
        "precision": tp / predicted_positive if predicted_positive else None,
        "n_positive": positives,
        "n_negative": negatives,
    }


def format_items(items: list[ScoreItem]) -> str:
    """The numbered excerpts of one scoring prompt."""
    return "\n".join(f"{i + 1}. {item.text.lstrip()}" for i, item in enumerate(items))


async def _judge_batch(
    client: ChatClient,
    template: PromptTemplate,
    explanation: str,
    batch: list[ScoreItem],
    settings: LabelingSettings,
) -> tuple[list[bool], int, int, bool]:
    messages = template.render(explanation=explanation, examples=format_items(batch), count=len(batch))
    reply = await client.complete(messages, max_tokens=settings.max_tokens, temperature=settings.temperature)
    try:
        judged = parse_judgements(reply.text, len(batch))
    except ParseError as exc:
        usage = (reply.prompt_tokens, reply.completion_tokens, reply.usage_estimated)
        raise _BatchFailed(str(exc), *usage) from None
    return judged, reply.prompt_tokens, reply.completion_tokens, reply.usage_estimated


class _BatchFailed(Exception):
    def __init__(self, message: str, prompt_tokens: int, completion_tokens: int, estimated: bool) -> None:
        super().__init__(message)
        self.usage = (prompt_tokens, completion_tokens, estimated)


async def score_method(
    client: ChatClient,
    method: str,
    template: PromptTemplate,
    record: FeatureRecord,
    explanation: str,
    settings: LabelingSettings,
    outcome: ScoreOutcome,
) -> None:
    """Run one scoring method for one feature and record its metrics (or its error) in `outcome.details`."""
    rng = random.Random(f"{settings.seed}:{method}:{record.index}")
    if method == "detection":
        items = detection_items(record, settings.score_examples, settings.example_tokens, rng)
    else:
        items = fuzzing_items(record, 2 * settings.score_examples, settings.example_tokens, rng)
    details: dict[str, Any] = {"prompt_version": template.prompt_version}
    outcome.details[method] = details
    labels = [item.label for item in items]
    if not any(labels) or all(labels):
        details["error"] = (
            f"feature {record.index} lacks held-out examples for {method} scoring "
            f"({sum(labels)} positive, {len(labels) - sum(labels)} negative; need both)"
        )
        return
    size = settings.score_batch_size
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    results = await asyncio.gather(
        *(_judge_batch(client, template, explanation, b, settings) for b in batches), return_exceptions=True
    )
    predictions: list[bool] = []
    errors = []
    for result in results:
        if isinstance(result, _BatchFailed):
            usage = result.usage
            errors.append(str(result))
        elif isinstance(result, RequestFailed):
            usage = (0, 0, False)
            errors.append(str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            judged, prompt_tokens, completion_tokens, estimated = result
            usage = (prompt_tokens, completion_tokens, estimated)
            predictions += judged
        outcome.prompt_tokens += usage[0]
        outcome.completion_tokens += usage[1]
        outcome.usage_estimated |= bool(usage[2])
    if errors:
        details["error"] = f"{method} scoring failed: {errors[0]}"
        return
    details.update(classification_metrics(labels, predictions))
    details["labels"] = [int(v) for v in labels]
    details["predictions"] = [int(v) for v in predictions]


async def score_explanation(
    client: ChatClient,
    record: FeatureRecord,
    explanation: str,
    settings: LabelingSettings,
    templates: dict[str, PromptTemplate],
) -> ScoreOutcome:
    """Score `explanation` of `record` with every method in `settings.score_methods`."""
    outcome = ScoreOutcome()
    await asyncio.gather(
        *(
            score_method(client, method, templates[method], record, explanation, settings, outcome)
            for method in settings.score_methods
        )
    )
    return outcome
