"""Prompt templates (TOML files with a version) and the text of the excerpts shown to the explainer model.

A template file holds `name`, `version`, `kind` (explain | detection | fuzzing), an optional `system` and a
`user` string. `{identifier}` in system/user is a placeholder filled at run time; other braces are literal.
Built-in templates live next to this module in `templates/`; user templates are `.toml` files in
`<MISTUDIO_HOME>/templates/` (found by name) or anywhere (found by path).
"""

from __future__ import annotations

import json
import math
import random
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mistudio_tui.config import paths
from mistudio_tui.labeling.types import Example, FeatureRecord, LabelingSettings

MARK_OPEN, MARK_CLOSE = "<<", ">>"
MAX_LOGIT_TOKENS = 10
MAX_LISTED_ACTIVATIONS = 12
PLACEHOLDERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (allowed, required)
    "explain": (frozenset({"examples", "logits", "count", "feature_index"}), frozenset({"examples"})),
    "detection": (frozenset({"explanation", "examples", "count"}), frozenset({"explanation", "examples"})),
    "fuzzing": (frozenset({"explanation", "examples", "count"}), frozenset({"explanation", "examples"})),
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMPLATE_KEYS = frozenset({"name", "version", "kind", "system", "user", "description"})


class TemplateError(ValueError):
    """A template file is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned system + user prompt with `{placeholder}`s."""

    name: str
    version: str
    kind: str
    system: str
    user: str
    source: str = "built-in"

    @property
    def prompt_version(self) -> str:
        """What is stored with each label: '<name>/<version>'."""
        return f"{self.name}/{self.version}"

    def render(self, **values: object) -> list[dict[str, str]]:
        """The chat messages with placeholders filled (blank runs of lines collapsed)."""
        missing = sorted(set(_placeholders(self.system + self.user)) - set(values))
        if missing:
            raise ValueError(f"template {self.prompt_version} needs value(s) for {', '.join(missing)}")

        def fill(text: str) -> str:
            filled = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
            return re.sub(r"\n{3,}", "\n\n", filled).strip()

        messages = []
        if self.system.strip():
            messages.append({"role": "system", "content": fill(self.system)})
        messages.append({"role": "user", "content": fill(self.user)})
        return messages


def _placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _braced(names: set[str] | frozenset[str]) -> str:
    return ", ".join("{" + name + "}" for name in sorted(names))


def parse_template(text: str, source: str) -> PromptTemplate:
    """A template from TOML text; `source` (a path or 'built-in') names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"template {source} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _TEMPLATE_KEYS)
    if unknown:
        raise TemplateError(
            f"template {source} has unknown key(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(_TEMPLATE_KEYS))}"
        )
    for key in ("name", "version", "kind", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise TemplateError(f"template {source} needs a non-empty string `{key}`")
    if not isinstance(data.get("system", ""), str):
        raise TemplateError(f"template {source}: `system` must be a string")
    kind = data["kind"].strip()
    if kind not in PLACEHOLDERS:
        raise TemplateError(f"template {source} has kind {kind!r}; expected one of {', '.join(PLACEHOLDERS)}")
    name, version = data["name"].strip(), data["version"].strip()
    if not re.fullmatch(r"[\w.\-]+", name) or not re.fullmatch(r"[\w.\-]+", version):
        raise TemplateError(f"template {source}: name and version may use only letters, digits, '.', '-' and '_'")
    system, user = data.get("system", ""), data["user"]
    allowed, required = PLACEHOLDERS[kind]
    used = set(_placeholders(system + user))
    if used - allowed:
        raise TemplateError(
            f"template {source} uses unknown placeholder(s) {_braced(used - allowed)}; "
            f"a {kind} template may use {_braced(allowed)}"
        )
    if required - used:
        raise TemplateError(f"template {source} lacks required placeholder(s) {_braced(required - used)}")
    if kind == "explain" and not all(tag in (system + user).upper() for tag in ("NAME:", "DESCRIPTION:")):
        raise TemplateError(
            f"template {source} must ask for final 'NAME:' and 'DESCRIPTION:' lines (the parser reads them)"
        )
    return PromptTemplate(name, version, kind, system.strip(), user.strip(), source)


def builtin_templates() -> dict[str, PromptTemplate]:
    """The templates shipped with miStudio, by name."""
    folder = resources.files("mistudio_tui.labeling") / "templates"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            template = parse_template(entry.read_text(encoding="utf-8"), f"built-in {entry.name}")
            found[template.name] = template
    return found


def user_templates_dir() -> Path:
    """Where user templates are looked up by name."""
    return paths().dir("templates")


def load_template(path: Path | str) -> PromptTemplate:
    """A user template from a .toml file; its name must not shadow a built-in one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"template file {path} not found")
    template = parse_template(path.read_text(encoding="utf-8"), str(path))
    if template.name in builtin_templates():
        raise TemplateError(
            f"template {path} is named {template.name!r} like a built-in template; give it another name "
            "so its labels can be told apart"
        )
    return template


def resolve_template(spec: str, kind: str) -> PromptTemplate:
    """The template named `spec` (built-in, then user folder) or at path `spec`, checked to be of `kind`."""
    spec = spec.strip()
    if spec.endswith(".toml") or "/" in spec or "\\" in spec:
        template = load_template(spec)
    else:
        builtins = builtin_templates()
        user_file = user_templates_dir() / f"{spec}.toml"
        if spec in builtins:
            template = builtins[spec]
        elif user_file.is_file():
            template = load_template(user_file)
        else:
            names = ", ".join(sorted(n for n, t in builtins.items() if t.kind == kind))
            raise ValueError(
                f"unknown prompt template {spec!r}; expected a built-in {kind} template ({names}), "
                f"a .toml file in {user_templates_dir()}, or a path to one"
            )
    if template.kind != kind:
        raise TemplateError(f"template {template.source} is of kind {template.kind!r}; expected kind {kind!r}")
    return template


# --- excerpts -------------------------------------------------------------------------------------------
def normalise_activations(activations: list[float], max_activation: float) -> list[int]:
    """Activations on a 0-10 integer scale relative to the feature's max (negatives count as 0)."""
    if not max_activation or max_activation <= 0 or not math.isfinite(max_activation):
        return [0] * len(activations)
    return [min(10, max(0, round(10.0 * a / max_activation))) if math.isfinite(a) else 0 for a in activations]


def crop(example: Example, size: int, rng: random.Random | None = None) -> Example:
    """At most `size` tokens: around the peak (more context before it), or a random window given `rng`."""
    n = len(example.tokens)
    if n <= size:
        return example
    if rng is not None:
        start = rng.randrange(0, n - size + 1)
    else:
        start = min(max(0, example.peak - (size * 3) // 4), n - size)
    return Example(example.tokens[start : start + size], example.activations[start : start + size])


def _display(token: str) -> str:
    return (
        token.replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace(MARK_OPEN, "< <")
        .replace(MARK_CLOSE, "> >")
    )


def render_tokens(tokens: list[str], marked: list[bool] | None = None) -> str:
    """The tokens as one line, runs of marked tokens wrapped in <<…>> (leading spaces kept outside)."""
    marked = marked or [False] * len(tokens)
    parts: list[str] = []
    i = 0
    while i < len(tokens):
        if not marked[i]:
            parts.append(_display(tokens[i]))
            i += 1
            continue
        j = i
        while j < len(tokens) and marked[j]:
            j += 1
        span = "".join(_display(t) for t in tokens[i:j])
        stripped = span.lstrip()
        parts.append(span[: len(span) - len(stripped)] + MARK_OPEN + stripped + MARK_CLOSE)
        i = j
    return "".join(parts)


def _quote(token: str) -> str:
    return json.dumps(token.strip() or token, ensure_ascii=False)


def format_activating_example(example: Example, max_activation: float, number: int) -> str:
    """One numbered excerpt with its activating tokens marked, then those tokens' 0-10 activations."""
    levels = normalise_activations(example.activations, max_activation)
    marked = [level >= 1 for level in levels]
    text = render_tokens(example.tokens, marked).lstrip()
    active = [(i, t, lv) for i, (t, lv) in enumerate(zip(example.tokens, levels, strict=True)) if lv >= 1]
    strongest = sorted(sorted(active, key=lambda a: -a[2])[:MAX_LISTED_ACTIVATIONS])
    listed = ", ".join(f"{_quote(t)} {lv}" for _, t, lv in strongest)
    return f"Example {number}: {text}\nActivations: {listed}"


def select_examples(record: FeatureRecord, n: int) -> list[Example]:
    """Up to `n` activating examples: about half the top ones, the rest spread over the quantile examples."""
    top = [e for e in record.top_examples if e.max_activation > 0]
    quantile = [e for e in record.quantile_examples if e.max_activation > 0]
    n_quantile = min(len(quantile), n // 2) if top else min(len(quantile), n)
    n_top = min(len(top), n - n_quantile)
    n_quantile = min(len(quantile), n - n_top)
    chosen = top[:n_top]
    if n_quantile:
        step = len(quantile) / n_quantile
        chosen += [quantile[int(i * step)] for i in range(n_quantile)]
    unique: dict[tuple[tuple[str, ...], tuple[float, ...]], Example] = {}
    for example in chosen:
        unique.setdefault((tuple(example.tokens), tuple(example.activations)), example)
    return sorted(unique.values(), key=lambda e: e.max_activation, reverse=True)


def feature_max_activation(record: FeatureRecord, examples: list[Example]) -> float:
    """The scale for 0-10 normalisation: the feature's recorded max, or the largest activation shown."""
    return max([record.max_activation or 0.0, *(e.max_activation for e in examples)])


def format_logits(record: FeatureRecord) -> str:
    """The logit-lens lines (tokens the feature promotes and suppresses), or '' when there are none."""
    lines = []
    if record.logit_promoted:
        tokens = ", ".join(_quote(t) for t in record.logit_promoted[:MAX_LOGIT_TOKENS])
        lines.append(f"Output tokens this feature makes more likely (logit lens): {tokens}")
    if record.logit_suppressed:
        tokens = ", ".join(_quote(t) for t in record.logit_suppressed[:MAX_LOGIT_TOKENS])
        lines.append(f"Output tokens this feature makes less likely: {tokens}")
    return "\n".join(lines)


def build_explanation_messages(
    record: FeatureRecord, template: PromptTemplate, settings: LabelingSettings
) -> list[dict[str, str]]:
    """The chat messages asking to explain `record`; ValueError when it has no activating example."""
    examples = select_examples(record, settings.examples_per_feature)
    if not examples:
        raise ValueError(f"feature {record.index} has no activating examples to explain")
    scale = feature_max_activation(record, examples)
    shown = [crop(e, settings.example_tokens) for e in examples]
    body = "\n\n".join(format_activating_example(e, scale, i + 1) for i, e in enumerate(shown))
    return template.render(
        examples=body,
        logits=format_logits(record) if settings.include_logits else "",
        count=len(shown),
        feature_index=record.index,
    )
