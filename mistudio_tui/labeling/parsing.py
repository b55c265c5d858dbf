"""Reading model answers: the NAME/DESCRIPTION explanation and lists of yes/no judgements, in many styles."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning|thought)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning|thought)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning|thought)>", re.IGNORECASE)
_FIELD_LINE = re.compile(
    r"^[\s>*_#\-•]*(?:\d+[.)]\s*)?[*_`\[]*\s*"
    r"(name|technical(?:[ _]name)?|label|title|description|semantic(?:[ _]description)?|explanation)"
    r"\s*[*_`\]]*\s*[:：]\s*\**\s*(.*)$",
    re.IGNORECASE,
)
_NAME_KEYS = ("name", "technical", "technical_name", "label", "title")
_DESCRIPTION_KEYS = ("description", "semantic", "semantic_description", "explanation")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}
_ANSWER_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "y"), True),
    **dict.fromkeys(("0", "false", "no", "n"), False),
}


class ParseError(ValueError):
    """The model's answer does not have the expected shape; the message says what was missing."""


@dataclass(frozen=True)
class Explanation:
    """A parsed label: a short technical name and a one-to-two-sentence description."""

    technical: str
    semantic: str


def strip_reasoning(text: str) -> str:
    """The answer without <think>…</think> blocks; raises ParseError when it ends inside an unclosed one."""
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # some servers drop the opening tag and send only "…reasoning</think>answer"
        text = text[closes[-1].end() :]
    opened = _THINK_OPEN.search(text)
    if opened:
        if not text[: opened.start()].strip():
            raise ParseError("the answer ended inside a <think> block (raise max_tokens for reasoning models)")
        text = text[: opened.start()]
    return text.strip()


def _clean(value: str, drop_period: bool = False) -> str:
    """`value` without surrounding markdown, quotes and (for names) a final full stop."""
    previous = None
    while value != previous:
        previous = value
        value = re.sub(r"^\*+|\*+$", "", value.strip()).strip()
        wrapped = re.fullmatch(r"(_{1,2})(.+)\1", value)
        if wrapped:
            value = wrapped.group(2)
        if drop_period and value.endswith(".") and not value.endswith(".."):
            value = value[:-1].rstrip()
        if len(value) >= 2 and value[0] in _QUOTES and value[-1] == _QUOTES[value[0]]:
            value = value[1:-1]
    return " ".join(value.split())


def _looks_like_placeholder(value: str) -> bool:
    return value.startswith("<") and value.endswith(">") and not value.startswith("<<")


def _from_json(text: str) -> Explanation | None:
    candidates = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL) or re.findall(
        r"\{[^{}]*\}", text, re.DOTALL
    )
    for raw in reversed(candidates):
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        lowered = {str(k).lower(): v for k, v in data.items()}
        name = next((lowered[k] for k in _NAME_KEYS if isinstance(lowered.get(k), str)), None)
        description = next((lowered[k] for k in _DESCRIPTION_KEYS if isinstance(lowered.get(k), str)), None)
        if name and description:
            return Explanation(_clean(name, drop_period=True), _clean(description))
    return None


def parse_explanation(text: str) -> Explanation:
    """The last NAME: and DESCRIPTION: lines (or a JSON object with those keys) of a model's answer."""
    answer = strip_reasoning(text)
    if not answer:
        raise ParseError("the answer is empty")
    name: str | None = None
    description: str | None = None
    lines = answer.splitlines()
    for i, line in enumerate(lines):
        match = _FIELD_LINE.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key.startswith(("name", "technical", "label", "title")):
            name = value
        else:
            continuation = []
            for following in lines[i + 1 :]:
                if not following.strip() or _FIELD_LINE.match(following) or "```" in following:
                    break
                continuation.append(following)
            description = " ".join([value, *continuation])
    if name is None or description is None:
        parsed = _from_json(answer)
        if parsed is not None:
            return _checked(parsed)
    if name is None and description is None:
        raise ParseError(f"no NAME: or DESCRIPTION: line in the answer (it ends with {_tail(answer)!r})")
    if name is None:
        raise ParseError(f"no NAME: line in the answer (it ends with {_tail(answer)!r})")
    if description is None:
        raise ParseError(f"no DESCRIPTION: line in the answer (it ends with {_tail(answer)!r})")
    return _checked(Explanation(_clean(name, drop_period=True), _clean(description)))


def _checked(explanation: Explanation) -> Explanation:
    for field_name, value in (("NAME", explanation.technical), ("DESCRIPTION", explanation.semantic)):
        if not value:
            raise ParseError(f"the {field_name}: line is empty")
        if _looks_like_placeholder(value):
            raise ParseError(f"the {field_name}: line repeats the template's placeholder {value!r}")
    return explanation


def _tail(text: str, size: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else "…" + flat[-size:]


def parse_judgements(text: str, count: int) -> list[bool]:
    """`count` yes/no judgements: the last list of that length (JSON-ish), else numbered 'N: yes' lines."""
    answer = strip_reasoning(text)
    for raw in reversed(re.findall(r"\[([^\[\]]*)\]", answer)):
        items = [item.strip().strip("\"'`").strip().lower() for item in raw.split(",")]
        if len(items) == count and all(item in _ANSWER_WORDS for item in items):
            return [_ANSWER_WORDS[item] for item in items]
    numbered: dict[int, bool] = {}
    for match in re.finditer(
        r"^[\s>*_#\-•]*(?:example|excerpt)?\s*#?(\d+)\s*[*_`]*\s*[:.)\-–]\s*[*_`]*\s*(yes|no|true|false|1|0|y|n)\b",
        answer,
        re.IGNORECASE | re.MULTILINE,
    ):
        numbered[int(match.group(1))] = _ANSWER_WORDS[match.group(2).lower()]
    if set(numbered) >= set(range(1, count + 1)):
        return [numbered[i] for i in range(1, count + 1)]
    raise ParseError(f"expected a list of {count} answers (0 or 1); the answer ends with {_tail(answer)!r}")
