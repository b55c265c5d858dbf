"""An async client for OpenAI-compatible `POST /chat/completions`: bounded, paced, retried, and key-safe."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from mistudio_tui.labeling.ratelimit import RateLimiter, backoff_delay, parse_retry_after
from mistudio_tui.labeling.secrets import Redactor
from mistudio_tui.labeling.types import LabelingSettings

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
ABORT_STATUS = {
    401: "the server rejected the API key",
    402: "the account has no credit left",
    403: "the server refused access",
    404: "the endpoint or model was not found (check the base URL and the model name)",
}
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "quota_exceeded"})
_QUOTA_PHRASES = re.compile(
    r"insufficient[_ ]quota|exceeded your current quota|check your plan and billing|quota exceeded"
    r"|insufficient (?:credits?|balance|funds)|credit balance|out of credits?|billing (?:hard )?limit"
    r"|payment required",
    re.IGNORECASE,
)
CHARS_PER_TOKEN = 4


class LabelingAborted(Exception):
    """The whole job must stop (bad key, no credit, quota, unknown model); the message is the provider's."""

    summary: dict[str, Any] | None = None  # what the job had done when it stopped (set by the pipeline)


class RequestFailed(Exception):
    """One request failed for good (retries exhausted or a non-retryable answer); other features go on."""


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


@dataclass(frozen=True)
class ChatReply:
    """The assistant's text and its token cost (estimated from characters when the server sent no usage)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    finish_reason: str | None
    attempts: int


def chat_completions_url(base_url: str) -> str:
    """The chat-completions URL for a base URL: '/v1' is added only when the URL has no path."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url {base_url!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path = (path or "/v1") + "/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def estimate_tokens(text: str) -> int:
    """A rough token count for text when the server reports no usage (about four characters per token)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN)) if text else 0


def provider_message(body: bytes | str, limit: int = 400) -> str:
    """The human-readable error message in a provider's error body, on one line."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message = ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("code") or error.get("type") or "")
        elif isinstance(error, str):
            message = error
        message = message or str(data.get("message") or data.get("detail") or "")
    message = " ".join((message or text).split())
    return message[:limit] + ("…" if len(message) > limit else "") if message else "(empty body)"


def is_quota_error(body: bytes | str) -> bool:
    """True when an error body says the account is out of quota, credit or billing."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        if str(error.get("code") or "") in _QUOTA_CODES or str(error.get("type") or "") in _QUOTA_CODES:
            return True
    return bool(_QUOTA_PHRASES.search(provider_message(text, limit=2000)))


class ChatClient:
    """Sends chat completions with bounded concurrency, an RPM limit, retries and a per-request timeout."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        requests_per_minute: float | None = None,
        max_retries: int = 5,
        timeout_s: float = 60.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_tokens_field: str = "max_tokens",
        redact: Redactor | None = None,
        on_retry: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.model = model
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_tokens_field = max_tokens_field
        self.requests_sent = 0
        self._redact = redact or Redactor([api_key])
        self._on_retry = on_retry or (lambda _text: None)
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._limiter = RateLimiter(requests_per_minute)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    @classmethod
    def for_settings(
        cls,
        settings: LabelingSettings,
        *,
        api_key: str | None,
        redact: Redactor | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> ChatClient:
        """A client configured from a job's settings."""
        return cls(
            settings.base_url,
            settings.model,
            api_key=api_key,
            concurrency=settings.concurrency,
            requests_per_minute=settings.requests_per_minute,
            max_retries=settings.max_retries,
            timeout_s=settings.timeout_s,
            retry_base_s=settings.retry_base_s,
            retry_max_s=settings.retry_max_s,
            max_tokens_field=settings.max_tokens_field,
            redact=redact,
            on_retry=on_retry,
        )

    def __repr__(self) -> str:
        return f"ChatClient(url={self._redact(self.url)!r}, model={self.model!r})"

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def request_body(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float | None
    ) -> dict[str, Any]:
        """The JSON body of one chat-completion request."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": False}
        body[self.max_tokens_field] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return body

    async def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int = 1024, temperature: float | None = 0.0
    ) -> ChatReply:
        """The reply to `messages`; raises RequestFailed (this request) or LabelingAborted (the whole job)."""
        body = self.request_body(messages, max_tokens=max_tokens, temperature=temperature)
        payload = json.dumps(body).encode()
        prompt_chars = "".join(m.get("content", "") for m in messages)
        attempt = 0
        while True:
            try:
                async with self._semaphore:
                    await self._limiter.acquire()
                    self.requests_sent += 1
                    return await self._attempt(payload, prompt_chars, max_tokens, attempt + 1)
            except _Retry as retry:
                if attempt >= self.max_retries:
                    gave_up = f"{retry} (gave up after {attempt + 1} attempts)"
                    if retry.unreachable:  # every other feature would fail the same way
                        raise LabelingAborted(self._redact(f"cannot reach {self.url}: {gave_up}")) from None
                    raise RequestFailed(self._redact(gave_up)) from None
                if retry.retry_after is not None:
                    delay = retry.retry_after + self._rng.uniform(0.0, min(1.0, self.retry_base_s) / 10)
                    self._limiter.defer(retry.retry_after)
                else:
                    delay = backoff_delay(attempt, self.retry_base_s, self.retry_max_s, self._rng)
                next_try = f"attempt {attempt + 2}/{self.max_retries + 1}"
                self._on_retry(self._redact(f"{retry}; retrying in {delay:.1f}s ({next_try})"))
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, body: bytes, prompt_chars: str, max_tokens: int, attempts: int) -> ChatReply:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._http.post(self.url, content=body)
        except (TimeoutError, httpx.TimeoutException):
            raise _Retry(f"no answer within {self.timeout_s:g}s (timeout)") from None
        except httpx.ConnectError as exc:
            raise _Retry(f"connection failed: {exc}", unreachable=True) from None
        except httpx.TransportError as exc:
            raise _Retry(f"connection error: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status >= 400:
            self._raise_for_error(status, response.content, response.headers)
        try:
            data = response.json()
        except ValueError:
            snippet = " ".join(response.text[:120].split())
            raise _Retry(f"the server sent malformed JSON (HTTP {status}): {snippet!r}") from None
        return self._read_reply(data, prompt_chars, max_tokens, attempts)

    def _raise_for_error(self, status: int, content: bytes, headers: httpx.Headers) -> None:
        message = provider_message(content)
        if status in ABORT_STATUS or is_quota_error(content):
            reason = ABORT_STATUS.get(status, "the account is out of quota or credit")
            if status == 404:
                reason = f"{reason} at {self.url}"
            raise LabelingAborted(self._redact(f"{reason} (HTTP {status}): {message}")) from None
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Retry(f"HTTP {status}: {message}", parse_retry_after(headers))
        raise RequestFailed(self._redact(f"the server refused the request (HTTP {status}): {message}"))

    def _read_reply(self, data: Any, prompt_chars: str, max_tokens: int, attempts: int) -> ChatReply:
        if not isinstance(data, dict):
            raise _Retry(f"the response is JSON but not an object: {str(data)[:80]!r}")
        choices = data.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            if data.get("error") is not None:
                body = json.dumps(data)
                if is_quota_error(body):
                    raise LabelingAborted(
                        self._redact(f"the account is out of quota or credit: {provider_message(body)}")
                    )
                raise _Retry(f"the server answered with an error: {provider_message(body)}")
            raise _Retry("the response has no choices")
        choice = choices[0]
        finish_reason = choice.get("finish_reason")
        text = _message_text(choice.get("message"))
        if not text.strip():
            if finish_reason == "length":
                raise RequestFailed(
                    f"the answer was cut off at {self.max_tokens_field}={max_tokens} before any text "
                    "(raise max_tokens, e.g. for a reasoning model)"
                )
            raise _Retry(f"the response's message is empty (finish_reason={finish_reason!r})")
        usage_field = data.get("usage")
        usage = usage_field if isinstance(usage_field, dict) else {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
            estimated = False
        else:
            estimated = True
            prompt_tokens, completion_tokens = estimate_tokens(prompt_chars), estimate_tokens(text)
        return ChatReply(text, int(prompt_tokens), int(completion_tokens), estimated, finish_reason, attempts)


def _message_text(message: Any) -> str:
    """The text of an assistant message whose content is a string or a list of text parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
