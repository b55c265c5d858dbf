"""A real OpenAI-style chat-completions server on loopback for labeling tests, scriptable per request.

`ChatServer` runs `http.server.ThreadingHTTPServer` in a thread and records every request (headers, raw body,
arrival time, how many were in flight). Replies come from `script(...)`-queued `Reply`s first, then from a
responder; `FakeInterpreter` is a responder that reads the prompt and answers like a simple explainer and
scorer, so tests can check that each feature gets its own label and a meaningful score.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mistudio_tui.labeling.types import Example, FeatureRecord

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """What the server sends back for one request."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    truncate_to: int | None = None  # send only this many body bytes (Content-Length says more), then hang up


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.json.get("messages", [])

    @property
    def system(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "system")

    @property
    def user(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "user")

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


Responder = Callable[[RecordedRequest], Reply]


def completion(
    content: str | None,
    *,
    usage: dict[str, int] | None = None,
    finish_reason: str = "stop",
    model: str = "loopback-model",
) -> dict[str, Any]:
    """A chat.completion response body (no `usage` field when `usage` is None)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def word_usage(request: RecordedRequest, content: str) -> dict[str, int]:
    """Token usage the fake server reports: whitespace-separated words of the prompt and of the answer."""
    return {"prompt_tokens": len(request.prompt.split()), "completion_tokens": len(content.split())}


class FakeInterpreter:
    """Answers explanation, detection and fuzzing prompts by reading them, like a literal-minded explainer.

    Explain: names the most frequent <<marked>> text. Detection: 1 for excerpts containing the quoted word of
    the explanation. Fuzzing: 1 when every marked token is that word. `claim` makes it explain every feature
    with the same word (a bad explainer); `style` wraps explanations in other answer formats.
    """

    def __init__(self, claim: str | None = None, style: str = "plain", usage: bool = True) -> None:
        self.claim = claim
        self.style = style
        self.usage = usage
        self.kinds: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        user = request.user
        if "NAME:" in request.system + user:
            kind, content = "explain", self._explain(user)
        else:
            kind = "fuzzing" if "correctly marked" in user else "detection"
            content = self._judge(user, fuzzing=kind == "fuzzing")
        with self._lock:
            self.kinds.append(kind)
        return Reply(body=completion(content, usage=word_usage(request, content) if self.usage else None))

    def _explain(self, user: str) -> str:
        spans = Counter(re.findall(r"<<(.*?)>>", user))
        word = self.claim or (spans.most_common(1)[0][0] if spans else "nothing")
        name, description = f'the word "{word}"', f'Fires on the word "{word}" wherever it appears.'
        if self.style == "json":
            return "```json\n" + json.dumps({"name": name, "description": description}) + "\n```"
        if self.style == "think":
            thought = f"<think>The marked spans are mostly {word}. NAME: wrong</think>"
            return f"{thought}\n**NAME:** {name}\n**DESCRIPTION:** {description}"
        return f"The marked tokens are all {word}.\nNAME: {name}\nDESCRIPTION: {description}"

    @staticmethod
    def _judge(user: str, fuzzing: bool) -> str:
        match = re.search(r'^Explanation: .*?"([^"]+)"', user, re.MULTILINE)
        word = match.group(1) if match else ""
        answers = []
        for line in re.findall(r"^\d+\. (.*)$", user, re.MULTILINE):
            if fuzzing:
                spans = re.findall(r"<<(.*?)>>", line)
                answers.append(int(bool(spans) and set(" ".join(spans).split()) == {word}))
            else:
                answers.append(int(bool(word) and word in line))
        return f"Let me check each excerpt.\n{json.dumps(answers)}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = RecordedRequest(self.path, headers, body, time.monotonic())
        owner = self.server.owner
        owner._enter(request)
        try:
            reply = owner._reply_for(request)
            if reply.delay_s:
                owner._stopping.wait(reply.delay_s)
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            owner._leave()

    def _send(self, reply: Reply) -> None:
        body = reply.body
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = body or b""
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if not any(k.lower() == "content-type" for k in reply.headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if reply.truncate_to is not None:
            self.wfile.write(payload[: reply.truncate_to])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ChatServer


class ChatServer:
    """A loopback chat-completions server; use as a context manager."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or FakeInterpreter()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def root_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in arrival order; the responder answers after they run out."""
        with self._lock:
            self._queue.extend(replies)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _reply_for(self, request: RecordedRequest) -> Reply:
        if request.path != CHAT_PATH:
            return Reply(404, error_body(f"no route for {request.path}", "not_found"))
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        return scripted if scripted is not None else self.responder(request)


_FILLER_TEXT = (
    "the of and to in is was for on that with as by at from this have it are be or an not which one all were "
    "their there been has more when will would who so no into time only new some could these two may then do"
)
FILLER = tuple(_FILLER_TEXT.split())


def make_record(
    index: int,
    word: str,
    *,
    n_top: int = 6,
    n_quantile: int = 4,
    n_holdout: int = 6,
    length: int = 16,
    seed: int = 0,
) -> FeatureRecord:
    """A FeatureRecord whose feature fires on ` word` only (top, quantile and held-out examples, logits)."""
    rng = random.Random(f"{seed}:{index}:{word}")

    def example(peak: float | None) -> Example:
        tokens = [" " + rng.choice(FILLER) for _ in range(length)]
        acts = [0.0] * length
        if peak is not None:
            for position in rng.sample(range(length), 2):
                tokens[position] = " " + word
                acts[position] = peak * rng.uniform(0.6, 1.0)
        return Example(tokens, acts)

    return FeatureRecord(
        index=index,
        top_examples=[example(8.0) for _ in range(n_top)],
        quantile_examples=[example(3.0) for _ in range(n_quantile)],
        logit_promoted=[word + "s", word.upper()],
        logit_suppressed=["zzz"],
        density=0.01,
        max_activation=8.0,
        holdout_activating=[example(5.0) for _ in range(n_holdout)],
        holdout_non_activating=[example(None) for _ in range(n_holdout)],
    )
