"""The labeling job: explain (and optionally score) each feature over an OpenAI-compatible API, resumably."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sized
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mistudio_tui.labeling.client import ChatClient, LabelingAborted, RequestFailed
from mistudio_tui.labeling.parsing import ParseError, parse_explanation
from mistudio_tui.labeling.prompts import PromptTemplate, build_explanation_messages, resolve_template
from mistudio_tui.labeling.scoring import score_explanation
from mistudio_tui.labeling.secrets import Redactor, resolve_api_key, secrets_path
from mistudio_tui.labeling.types import FeatureRecord, LabelingSettings, LabelResult
from mistudio_tui.reporting import JobContext

POLL_S = 0.1
_END: Any = object()


@dataclass
class _Tally:
    """Running totals of one labeling job."""

    total: int | None
    settings: LabelingSettings
    labeled: int = 0
    failed: int = 0
    skipped: int = 0
    scored: int = 0
    score_sum: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    first_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.labeled + self.failed + self.skipped

    def add(self, result: LabelResult) -> None:
        if result.ok:
            self.labeled += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or result.error
        if result.score is not None:
            self.scored += 1
            self.score_sum += result.score
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.usage_estimated |= result.usage_estimated

    @property
    def cost(self) -> float | None:
        """Estimated cost from the user's per-million-token prices (None when no price is set)."""
        s = self.settings
        if s.price_prompt_per_million is None and s.price_completion_per_million is None:
            return None
        return (
            self.prompt_tokens * (s.price_prompt_per_million or 0.0)
            + self.completion_tokens * (s.price_completion_per_million or 0.0)
        ) / 1e6

    def text(self) -> str:
        tokens = self.prompt_tokens + self.completion_tokens
        parts = [f"{self.labeled} labeled", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(f"{'~' if self.usage_estimated else ''}{_compact(tokens)} tokens")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}")
        if self.scored:
            parts.append(f"mean score {self.score_sum / self.scored:.2f}")
        return " · ".join(parts)

    def summary(self, prompt_version: str, requests: int) -> dict[str, Any]:
        return {
            "features_total": self.total if self.total is not None else self.done,
            "features_done": self.labeled,
            "features_failed": self.failed,
            "features_skipped": self.skipped,
            "features_scored": self.scored,
            "mean_score": self.score_sum / self.scored if self.scored else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usage_estimated": self.usage_estimated,
            "cost": self.cost,
            "requests": requests,
            "model": self.settings.model,
            "prompt_version": prompt_version,
            "elapsed_s": round(time.monotonic() - self.started, 3),
        }


def _compact(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


class _Labeler:
    """Labels one feature at a time with a shared client."""

    def __init__(
        self,
        client: ChatClient,
        settings: LabelingSettings,
        template: PromptTemplate,
        score_templates: dict[str, PromptTemplate],
        redact: Redactor,
    ) -> None:
        self.client = client
        self.settings = settings
        self.template = template
        self.score_templates = score_templates
        self.redact = redact

    async def label(self, record: FeatureRecord) -> LabelResult:
        """The label (and score) of one feature; failures become a result with `error` set."""
        s = self.settings
        result = LabelResult(index=record.index, prompt_version=self.template.prompt_version, model=s.model)
        try:
            messages = build_explanation_messages(record, self.template, s)
        except ValueError as exc:
            result.error = str(exc)
            return result
        try:
            reply = await self.client.complete(messages, max_tokens=s.max_tokens, temperature=s.temperature)
        except RequestFailed as exc:
            result.error = self.redact(str(exc))
            return result
        result.raw_response = self.redact.secrets_only(reply.text)
        result.prompt_tokens, result.completion_tokens = reply.prompt_tokens, reply.completion_tokens
        result.usage_estimated = reply.usage_estimated
        try:
            explanation = parse_explanation(result.raw_response)
        except ParseError as exc:
            result.error = f"could not read the model's answer: {exc}"
            return result
        result.technical, result.semantic = explanation.technical, explanation.semantic
        if s.score:
            outcome = await score_explanation(
                self.client, record, f"{result.technical} — {result.semantic}", s, self.score_templates
            )
            result.score = outcome.score
            result.score_details = {
                method: {k: self.redact(v) if isinstance(v, str) else v for k, v in details.items()}
                for method, details in outcome.details.items()
            }
            result.prompt_tokens += outcome.prompt_tokens
            result.completion_tokens += outcome.completion_tokens
            result.usage_estimated |= outcome.usage_estimated
        return result


@asynccontextmanager
async def _cancel_watch(ctx: JobContext) -> AsyncIterator[asyncio.Event]:
    """An event set as soon as the job is cancelled (polled every POLL_S seconds)."""
    event = asyncio.Event()

    async def watch() -> None:
        while not ctx.cancelled():
            await asyncio.sleep(POLL_S)
        event.set()

    task = asyncio.create_task(watch())
    try:
        yield event
    finally:
        task.cancel()


async def label_features(
    records: Iterable[FeatureRecord],
    settings: LabelingSettings,
    ctx: JobContext,
    on_result: Callable[[LabelResult], None],
    skip: set[int] | frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Async form of `run_labeling`, for callers that already run an event loop."""
    template = resolve_template(settings.template, "explain")
    score_templates: dict[str, PromptTemplate] = {}
    if settings.score:
        names = {"detection": settings.detection_template, "fuzzing": settings.fuzzing_template}
        score_templates = {m: resolve_template(names[m], m) for m in settings.score_methods}
    api_key = resolve_api_key(settings.api_key_env)
    redact = Redactor([api_key])
    total = len(records) if isinstance(records, Sized) else None
    tally = _Tally(total, settings)
    ctx.log(
        redact(
            f"labeling {total if total is not None else 'all'} features with {settings.model} at "
            f"{settings.base_url} (prompt {template.prompt_version}"
            + (f", scoring by {', '.join(settings.score_methods)}" if settings.score else "")
            + ")"
        )
    )
    if api_key is None and settings.api_key_env:
        ctx.log(f"no API key in ${settings.api_key_env} or {secrets_path()}: sending requests without one")

    client = ChatClient.for_settings(
        settings, api_key=api_key, redact=redact, on_retry=lambda text: ctx.log(text, level="warning")
    )
    labeler = _Labeler(client, settings, template, score_templates, redact)
    window = 2 * settings.concurrency
    pending: set[asyncio.Task[LabelResult]] = set()
    feed = iter(records)
    exhausted = False
    ctx.progress(0, total, text="starting", unit="features")
    async with client, _cancel_watch(ctx) as cancelled:
        try:
            while True:
                ctx.check_cancelled()
                while not exhausted and len(pending) < window:
                    record = next(feed, _END)
                    if record is _END:
                        exhausted = True
                    elif record.index in skip:
                        tally.skipped += 1
                    else:
                        pending.add(asyncio.create_task(labeler.label(record)))
                if not pending:
                    break
                stop = asyncio.create_task(cancelled.wait())
                finished, _ = await asyncio.wait({*pending, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                for task in [t for t in pending if t in finished]:  # the label tasks that finished (not `stop`)
                    pending.discard(task)
                    result = task.result()
                    if result.error:
                        ctx.log(f"feature {result.index}: {result.error}", level="warning")
                    if result.usage_estimated and not tally.usage_estimated:
                        ctx.log("the server reports no token usage: token counts and cost are estimates")
                    on_result(result)
                    tally.add(result)
                ctx.progress(tally.done, total, text=tally.text(), unit="features")
            ctx.check_cancelled()
        except LabelingAborted as exc:
            exc.summary = tally.summary(template.prompt_version, client.requests_sent)
            ctx.log(f"labeling stopped: {exc}", level="error")
            raise
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
    summary = tally.summary(template.prompt_version, client.requests_sent)
    ctx.progress(tally.done, total, text=tally.text(), unit="features")
    ctx.flush()
    ctx.log(f"labeling finished: {tally.text()}")
    if tally.failed and not tally.labeled:  # a run that labeled nothing failed, whatever each request said
        failed = LabelingAborted(f"every request failed ({tally.failed} features); the first: {tally.first_error}")
        failed.summary = summary
        raise failed
    return summary


def run_labeling(
    records: Iterable[FeatureRecord],
    settings: LabelingSettings,
    ctx: JobContext,
    on_result: Callable[[LabelResult], None],
    skip: set[int] | frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Label every feature not in `skip`, calling `on_result` for each; returns counts, tokens and cost."""
    return asyncio.run(label_features(records, settings, ctx, on_result, skip))
