"""Plain data for auto-labeling: the features to label, the job's settings and one result per feature."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

SCORE_METHODS = ("detection", "fuzzing")


@dataclass(frozen=True)
class Example:
    """One context window: its tokens as text and the feature's activation at each token."""

    tokens: list[str]
    activations: list[float]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.activations):
            raise ValueError(
                f"example has {len(self.tokens)} tokens but {len(self.activations)} activations; "
                "expected one activation per token"
            )

    @property
    def peak(self) -> int:
        """The index of the max-activating token (the first one on ties; 0 for an empty example)."""
        if not self.activations:
            return 0
        return max(range(len(self.activations)), key=self.activations.__getitem__)

    @property
    def max_activation(self) -> float:
        """The largest activation in this example (0 for an empty example)."""
        return max(self.activations, default=0.0)


@dataclass(frozen=True)
class FeatureRecord:
    """Everything the labeler shows the model about one SAE feature."""

    index: int
    top_examples: list[Example]
    quantile_examples: list[Example] = field(default_factory=list)
    logit_promoted: list[str] = field(default_factory=list)
    logit_suppressed: list[str] = field(default_factory=list)
    density: float | None = None
    max_activation: float | None = None
    holdout_activating: list[Example] = field(default_factory=list)
    holdout_non_activating: list[Example] = field(default_factory=list)


@dataclass(frozen=True)
class LabelingSettings:
    """How to reach the explainer model and what to ask; holds the API key's env-var name, never the key."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    requests_per_minute: float | None = None
    max_retries: int = 5
    timeout_s: float = 60.0
    examples_per_feature: int = 20
    include_logits: bool = True
    template: str = "default"  # a built-in or user template name, or a path to a .toml file
    temperature: float | None = 0.0  # None: not sent (some reasoning models accept only their default)
    max_tokens: int = 1024
    price_prompt_per_million: float | None = None
    price_completion_per_million: float | None = None
    score: bool = False
    score_examples: int = 10  # per class: held-out activating and non-activating excerpts each
    score_methods: tuple[str, ...] = ("detection",)
    score_batch_size: int = 10  # excerpts judged per scoring request
    detection_template: str = "detection"
    fuzzing_template: str = "fuzzing"
    example_tokens: int = 64  # each excerpt is cropped to this many tokens around its peak
    seed: int = 0  # shuffling of scoring excerpts
    max_tokens_field: str = "max_tokens"  # or "max_completion_tokens" (OpenAI reasoning models)
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_methods", tuple(self.score_methods))
        url = urlsplit(self.base_url.strip())
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(
                f"base_url {self.base_url!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1"
            )
        if not self.model.strip():
            raise ValueError("model is empty; expected the model name the server serves (e.g. gpt-4o-mini)")
        _require(self.concurrency >= 1, "concurrency", self.concurrency, "an integer >= 1")
        if self.requests_per_minute is not None:
            _require(self.requests_per_minute > 0, "requests_per_minute", self.requests_per_minute, "> 0")
        _require(self.max_retries >= 0, "max_retries", self.max_retries, "an integer >= 0")
        _require(self.timeout_s > 0, "timeout_s", self.timeout_s, "a number of seconds > 0")
        _require(self.examples_per_feature >= 1, "examples_per_feature", self.examples_per_feature, ">= 1")
        _require(self.max_tokens >= 1, "max_tokens", self.max_tokens, "an integer >= 1")
        _require(self.score_examples >= 1, "score_examples", self.score_examples, ">= 1")
        _require(self.score_batch_size >= 1, "score_batch_size", self.score_batch_size, ">= 1")
        _require(self.example_tokens >= 2, "example_tokens", self.example_tokens, "an integer >= 2")
        _require(self.retry_base_s >= 0, "retry_base_s", self.retry_base_s, "a number of seconds >= 0")
        _require(self.retry_max_s >= 0, "retry_max_s", self.retry_max_s, "a number of seconds >= 0")
        if self.temperature is not None:
            _require(0 <= self.temperature <= 2, "temperature", self.temperature, "between 0 and 2, or None")
        for name in ("price_prompt_per_million", "price_completion_per_million"):
            value = getattr(self, name)
            if value is not None:
                _require(math.isfinite(value) and value >= 0, name, value, "a price >= 0 or None")
        unknown = [m for m in self.score_methods if m not in SCORE_METHODS]
        if unknown or not self.score_methods:
            raise ValueError(
                f"score_methods {list(self.score_methods)!r} is invalid; expected one or more of "
                f"{', '.join(SCORE_METHODS)}"
            )
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(
                f"max_tokens_field {self.max_tokens_field!r} is invalid; expected max_tokens or max_completion_tokens"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (safe to store: it never contains the API key)."""
        data = asdict(self)
        data["score_methods"] = list(self.score_methods)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelingSettings:
        """Settings from a dict such as `to_dict` wrote; unknown fields are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown labeling setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")


@dataclass
class LabelResult:
    """The outcome for one feature: a label, or an error saying why there is none."""

    index: int
    technical: str = ""
    semantic: str = ""
    raw_response: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_version: str = ""
    model: str = ""
    error: str | None = None
    score: float | None = None
    score_details: dict[str, Any] = field(default_factory=dict)
    usage_estimated: bool = False

    @property
    def ok(self) -> bool:
        """True when the feature got a label."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (e.g. for an artifact message or a database row)."""
        return asdict(self)
