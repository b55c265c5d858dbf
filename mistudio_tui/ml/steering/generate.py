"""Sampling loop with the KV cache in which steering hooks know every token's absolute position."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.ml.steering.interventions import StepState
from mistudio_tui.reporting import JobContext


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; temperature 0 means greedy."""

    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class IncrementalDecoder:
    """Turns token ids into text pieces as they arrive (holding back incomplete multi-byte characters)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token_id: int) -> str:
        """The new text `token_id` adds ('' while a character is still incomplete)."""
        self.ids.append(token_id)
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece, self.text = text[len(self.text) :], text
        return piece


def _next_token(logits: Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    if sampling.temperature == 0:
        return int(logits.argmax(-1))
    scores = logits.float().unsqueeze(0)
    scores = TemperatureLogitsWarper(sampling.temperature)(None, scores)
    if sampling.top_p < 1:
        scores = TopPLogitsWarper(sampling.top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _cache_kwarg(model: Any) -> str:
    """transformers 5.x renamed the KV cache argument `past_key_values` to `cache`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@torch.no_grad()
def generate_ids(
    model: Any,
    input_ids: Tensor,
    sampling: Sampling,
    state: StepState | None = None,
    patch: Callable[[], AbstractContextManager[Any]] | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    ctx: JobContext | None = None,
) -> Iterator[int]:
    """Yield sampled token ids after `input_ids` [1, n]; `patch()` wraps every forward pass (steering hooks).

    `state.offset` is set to the first position of each pass, so hooks steer prompt and generated tokens alike.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape [1, n] with n >= 1, got {tuple(input_ids.shape)}")
    state = state if state is not None else StepState()
    state.prompt_len = int(input_ids.shape[1])
    generator = torch.Generator().manual_seed(int(sampling.seed))
    wrap = patch or nullcontext
    cache_arg = _cache_kwarg(model)
    sequence = input_ids
    past: Any = None
    for _ in range(sampling.max_tokens):
        if ctx is not None:
            ctx.check_cancelled()
        if use_cache and past is not None:
            step_ids, state.offset = sequence[:, -1:], sequence.shape[1] - 1
        else:
            step_ids, state.offset = sequence, 0
        with wrap():
            out = model(input_ids=step_ids, use_cache=use_cache, **{cache_arg: past})
        past = _returned_cache(out) if use_cache else None
        token = _next_token(out.logits[0, -1], sampling, generator)
        yield token
        if eos_id is not None and token == eos_id:
            return
        sequence = torch.cat([sequence, torch.tensor([[token]], device=sequence.device)], dim=1)
