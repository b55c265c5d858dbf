"""The chat-completions client against a real loopback HTTP server: retries, aborts, usage, pacing."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from mistudio_tui.labeling.client import ChatClient, LabelingAborted, RequestFailed, chat_completions_url
from mistudio_tui.labeling.ratelimit import RateLimiter, backoff_delay, parse_retry_after
from tests.chat_server import ChatServer, RecordedRequest, Reply, completion, error_body

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    def hello(request: RecordedRequest) -> Reply:
        return Reply(body=completion("hello", usage={"prompt_tokens": 11, "completion_tokens": 2}))

    with ChatServer(hello) as srv:
        yield srv


def make_client(server: ChatServer, **overrides: Any) -> ChatClient:
    options: dict[str, Any] = {"retry_base_s": 0.01, "retry_max_s": 0.05, "timeout_s": 5.0, "max_retries": 3}
    options.update(overrides)
    return ChatClient(options.pop("base_url", server.base_url), "test-model", **options)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:8000", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1/", "http://h:8000/v1/chat/completions"),
        ("https://gw.example/v1beta/openai/", "https://gw.example/v1beta/openai/chat/completions"),
        ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
    ],
)
def test_chat_completions_url_accepts_common_base_urls(base: str, url: str) -> None:
    assert chat_completions_url(base) == url


def test_chat_completions_url_rejects_non_http() -> None:
    with pytest.raises(ValueError, match="'ftp://h' is not an http"):
        chat_completions_url("ftp://h")


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_reaches_the_server_with_or_without_v1(server: ChatServer, suffix: str) -> None:
    async with make_client(server, base_url=server.root_url + suffix) as client:
        reply = await client.complete(MESSAGES)
    assert reply.text == "hello"
    assert server.requests[0].path == "/v1/chat/completions"
    sent = server.requests[0].json
    assert sent["model"] == "test-model" and sent["messages"] == MESSAGES and sent["max_tokens"] == 1024


async def test_usage_from_server_or_estimated(server: ChatServer) -> None:
    async with make_client(server) as client:
        reported = await client.complete(MESSAGES)
        server.script(Reply(body=completion("hello there, friend")))
        estimated = await client.complete(MESSAGES)
    assert (reported.prompt_tokens, reported.completion_tokens, reported.usage_estimated) == (11, 2, False)
    assert estimated.usage_estimated
    assert estimated.prompt_tokens > 0 and estimated.completion_tokens > 0


async def test_429_retry_after_is_honoured_and_the_same_body_resent(server: ChatServer) -> None:
    retries: list[str] = []
    server.script(Reply(429, error_body("Rate limit reached for requests", "requests"), {"Retry-After": "1"}))
    async with make_client(server, on_retry=retries.append) as client:
        reply = await client.complete(MESSAGES)
    first, second = server.requests
    assert reply.text == "hello" and reply.attempts == 2
    assert second.received_at - first.received_at >= 1.0
    assert second.body == first.body
    assert len(retries) == 1 and "HTTP 429" in retries[0] and "Rate limit reached" in retries[0]


async def test_retry_after_as_http_date(server: ChatServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    server.script(Reply(503, error_body("overloaded", "server_error"), {"Retry-After": when}))
    async with make_client(server) as client:
        await client.complete(MESSAGES)
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.9  # the date has one-second resolution
    assert second.body == first.body


@pytest.mark.parametrize(
    "failure",
    [
        Reply(500, error_body("internal error", "server_error")),
        Reply(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}),
        Reply(body="{'choices': [broken"),  # malformed JSON
        Reply(body=completion("hello"), truncate_to=25),  # the connection drops mid-body
        Reply(body={"id": "x", "object": "chat.completion", "choices": []}),  # no choices
        Reply(body=completion("")),  # an empty message
    ],
    ids=["500", "502-html", "malformed-json", "truncated", "no-choices", "empty-message"],
)
async def test_transient_failures_are_retried_with_the_same_body(server: ChatServer, failure: Reply) -> None:
    server.script(failure)
    async with make_client(server) as client:
        reply = await client.complete(MESSAGES)
    assert reply.text == "hello" and reply.attempts == 2
    assert len(server.requests) == 2 and server.requests[0].body == server.requests[1].body


async def test_slow_response_times_out_then_succeeds(server: ChatServer) -> None:
    server.script(Reply(body=completion("too late"), delay_s=5.0))
    async with make_client(server, timeout_s=0.3) as client:
        reply = await client.complete(MESSAGES)
    assert reply.text == "hello" and reply.attempts == 2
    assert server.requests[0].body == server.requests[1].body


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (Reply(500, error_body("upstream exploded", "server_error")), "HTTP 500: upstream exploded"),
        (Reply(body="not json at all"), "malformed JSON"),
        (Reply(body={"choices": []}), "no choices"),
        (Reply(body=completion("late"), delay_s=5.0), "timeout"),
    ],
    ids=["500", "malformed", "no-choices", "timeout"],
)
async def test_exhausted_retries_fail_this_request_clearly(server: ChatServer, failure: Reply, message: str) -> None:
    server.script(failure, failure, failure)
    async with make_client(server, max_retries=2, timeout_s=0.3) as client:
        with pytest.raises(RequestFailed, match=message) as info:
            await client.complete(MESSAGES)
    assert "gave up after 3 attempts" in str(info.value)
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            Reply(401, error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")),
            "401",
        ),
        (
            Reply(
                429,
                error_body(
                    "You exceeded your current quota, please check your plan and billing details.",
                    "insufficient_quota",
                    "insufficient_quota",
                ),
            ),
            "exceeded your current quota",
        ),
        (Reply(402, {"error": {"message": "Insufficient credits", "code": 402}}), "Insufficient credits"),
        (Reply(403, error_body("Project does not have access to model", "invalid_request_error")), "access"),
        (
            Reply(404, {"object": "error", "message": "The model `x` does not exist.", "code": 404}),
            "does not exist",
        ),
        (Reply(400, error_body("Your credit balance is too low to access the API.")), "credit balance"),
    ],
    ids=["401", "429-quota", "402", "403", "404-vllm", "400-credit"],
)
async def test_auth_and_quota_errors_abort_without_retrying(server: ChatServer, failure: Reply, message: str) -> None:
    server.script(failure)
    async with make_client(server) as client:
        with pytest.raises(LabelingAborted, match=message):
            await client.complete(MESSAGES)
    assert len(server.requests) == 1


async def test_other_client_errors_fail_the_request_without_retry(server: ChatServer) -> None:
    server.script(Reply(400, error_body("This model's maximum context length is 4096 tokens.")))
    async with make_client(server) as client:
        with pytest.raises(RequestFailed, match=r"HTTP 400.*maximum context length"):
            await client.complete(MESSAGES)
    assert len(server.requests) == 1


async def test_answer_cut_off_before_any_text_is_a_clear_error(server: ChatServer) -> None:
    server.script(Reply(body=completion(None, finish_reason="length")))
    async with make_client(server) as client:
        with pytest.raises(RequestFailed, match="cut off at max_tokens=1024"):
            await client.complete(MESSAGES)


async def test_authorization_header_only_with_a_key(server: ChatServer) -> None:
    async with make_client(server, api_key="sk-test-123456789") as client:
        await client.complete(MESSAGES)
    async with make_client(server) as client:
        await client.complete(MESSAGES)
    with_key, without_key = server.requests
    assert with_key.headers["authorization"] == "Bearer sk-test-123456789"
    assert "authorization" not in without_key.headers


async def test_optional_fields_follow_the_settings(server: ChatServer) -> None:
    async with make_client(server, max_tokens_field="max_completion_tokens") as client:
        await client.complete(MESSAGES, max_tokens=77, temperature=None)
    sent = server.requests[0].json
    assert sent["max_completion_tokens"] == 77 and "max_tokens" not in sent and "temperature" not in sent


async def test_concurrency_is_bounded() -> None:
    def slow(request: RecordedRequest) -> Reply:
        return Reply(body=completion("ok"), delay_s=0.2)

    with ChatServer(slow) as srv:
        async with make_client(srv, concurrency=3) as client:
            replies = await asyncio.gather(*(client.complete(MESSAGES) for _ in range(9)))
    assert len(replies) == 9
    assert srv.max_in_flight == 3


async def test_requests_per_minute_spaces_request_starts(server: ChatServer) -> None:
    async with make_client(server, concurrency=4, requests_per_minute=300) as client:
        await asyncio.gather(*(client.complete(MESSAGES) for _ in range(4)))
    arrivals = sorted(r.received_at for r in server.requests)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 3 and min(gaps) >= 0.15  # 300 rpm = one start every 0.2 s


async def test_rate_limiter_spacing_and_defer_with_a_fake_clock() -> None:
    now = [100.0]
    starts: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(requests_per_minute=60, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(3):
        await limiter.acquire()
        starts.append(now[0])
    limiter.defer(10.0)
    await limiter.acquire()
    starts.append(now[0])
    assert starts == [100.0, 101.0, 102.0, 112.0]


def test_parse_retry_after_forms() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "7"}, now) == 7.0
    assert parse_retry_after({"retry-after": "Mon, 01 Jan 2024 12:00:30 GMT"}, now) == 30.0
    assert parse_retry_after({"Retry-After": "Mon, 01 Jan 2024 11:00:00 GMT"}, now) == 0.0
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}, now) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}, now) is None
    assert parse_retry_after({}, now) is None
    assert parse_retry_after({"Retry-After": "999999"}, now) == 600.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(0)
    for attempt in range(8):
        ceiling = min(10.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 10.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


async def test_an_unreachable_server_stops_the_job() -> None:
    with ChatServer() as srv:
        url = srv.base_url
    async with ChatClient(url, "m", max_retries=1, retry_base_s=0.01) as client:
        with pytest.raises(LabelingAborted, match=r"cannot reach http://127\.0\.0\.1:.*gave up after 2 attempts"):
            await client.complete(MESSAGES)


async def test_404_names_the_url_it_tried(server: ChatServer) -> None:
    async with make_client(server, base_url=server.root_url + "/api") as client:
        with pytest.raises(LabelingAborted, match=r"not found .* at http://127\.0\.0\.1:\d+/api/chat/completions"):
            await client.complete(MESSAGES)
