"""Rendering a feature: examples with tokens shaded by activation, histogram, logit lens, similar features."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text

from mistudio_tui.display import printable
from mistudio_tui.ml.token_display import token_text
from mistudio_tui.services.features import not_firing
from mistudio_tui.ui import format as fmt

SHADES = ["#1f2a1f", "#23402a", "#2a5a33", "#2f753b", "#3a9147", "#4fae55", "#6ccb63", "#93e07a"]


def visible(token: str) -> str:
    """Make whitespace visible but compact: newlines as ⏎, tabs as ⇥."""
    return token.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "")


def shade(value: float, peak: float) -> Style:
    """Background green in proportion to value / peak (nothing when inactive)."""
    if value <= 0 or peak <= 0:
        return Style()
    level = min(int(value / peak * (len(SHADES) - 1)) + 1, len(SHADES) - 1)
    return Style(bgcolor=SHADES[level], color="white" if level < 5 else "black")


def example_text(example: Any, vocab: list[str], peak: float, values: bool = False) -> Text:
    """One context window: each token shaded by this feature's activation, the example's token underlined.

    Uncounted positions (BOS, separators) inside the window are shown dim; the padding outside the sequence
    at either end is left out. With `values`, each active token is followed by its activation, e.g. ` cat⁽²·⁴⁾`.
    """
    import numpy as np

    mask = np.asarray(example.mask, dtype=bool)
    inside = np.flatnonzero(mask)
    lo = min(int(inside[0]), example.marked) if inside.size else example.marked
    hi = max(int(inside[-1]), example.marked) if inside.size else example.marked
    text = Text()
    text.append(f"{example.value:6.2f} ", style="bold")
    for i in range(lo, hi + 1):
        token = int(example.token_ids[i])
        word = visible(token_text(vocab, token))
        if not mask[i] and i != example.marked:
            text.append(word, style="dim")
            continue
        value = float(example.activations[i])
        style = shade(value, peak)
        if i == example.marked:
            style = style + Style(bold=True, underline=True)
        text.append(word, style=style)
        if values and value > 0:
            text.append(f"[{fmt.num(value)}]", style="dim cyan")
    return text


def feature_header(detail: Any, labels: list[Any], technical: str = "") -> Text:
    """The feature's numbers and labels with who or what set them, when, and the score.

    `technical` is the technical label the table shows (the feature row's): the current label's, an older label's,
    or the one the extraction derived from the top token ("auto"). Unlabelled means no semantic label.
    """
    text = Text()
    text.append(f"feature {detail.index}", style="bold")
    if detail.dead:
        text.append("  dead", style="bold red")
    text.append(
        f"\ndensity {fmt.num(detail.density)} · fires {detail.count:,}× · max {fmt.num(detail.max)} · "
        f"mean {fmt.num(detail.mean_nonzero)}"
    )
    current = next((lb for lb in labels if lb.is_current), None)
    if current is not None and current.technical:
        text.append(f"\n{printable(current.technical)}", style="bold cyan")
    elif technical:
        text.append(f"\n{printable(technical)}", style="bold cyan")
        text.append(f"  [technical · {technical_origin(technical, labels)}]", style="dim")
    if current is not None and current.semantic:
        text.append(f"\n{printable(current.semantic)}")
    else:
        text.append("\nunlabelled: no semantic label · e labels it by hand, L with a model", style="dim")
    if current is not None:
        score = f" · score {current.score:.2f}" if current.score is not None else ""
        who = label_origin(current)
        text.append(f"\n[{who} · {current.created_at:%Y-%m-%d %H:%M}{score}]", style="dim")
    others = len(labels) - (1 if current is not None else 0)
    if others > 0:
        text.append(f"  (+{others} other label{'s' if others > 1 else ''}: h)", style="dim")
    return text


def technical_origin(technical: str, labels: list[Any]) -> str:
    """Who set a technical label no current label names: the newest label with it, else 'auto' (extraction)."""
    source = next((lb for lb in labels if lb.technical == technical), None)
    return label_origin(source) if source is not None else "auto"


def label_origin(label: Any) -> str:
    """Who or what set a label: its method, model and author (when not the model itself)."""
    who: str = label.method + (f" {label.model}" if label.model else "")
    if label.author and label.author != label.model:
        who += f" by {label.author}"
    return who


def activation_text(tokens: list[str], values: list[float]) -> Text:
    """Typed text with each token shaded by the feature's activation, the strongest one underlined."""
    text = Text()
    peak = max(values, default=0.0)
    if peak <= 0:  # nothing to shade: say so rather than show plain text and "max 0"
        text.append("".join(visible(t) for t in tokens))
        text.append(f"\n{not_firing(len(tokens))}", style="bold yellow")
        return text
    strongest = values.index(peak) if values and peak > 0 else -1
    for i, (token, value) in enumerate(zip(tokens, values, strict=True)):
        style = shade(float(value), peak)
        if i == strongest:
            style = style + Style(bold=True, underline=True)
        text.append(visible(token), style=style)
    text.append(
        f"\nmax {fmt.num(peak)}" + (f" on {visible(tokens[strongest])!r}" if strongest >= 0 else ""), style="dim"
    )
    return text


def logit_text(detail: Any, vocab: list[str], top: int = 8) -> Text:
    """The tokens the decoder direction promotes and suppresses through the unembedding."""
    text = Text()
    if detail.promoted_ids is None:
        return Text("logit lens: not available (not a causal LM)", style="dim")
    text.append("promotes  ", style="bold green")
    text.append("  ".join(_tok(vocab, int(i)) for i in detail.promoted_ids[:top]))
    text.append("\nsuppresses ", style="bold red")
    text.append("  ".join(_tok(vocab, int(i)) for i in detail.suppressed_ids[:top]))
    return text


def similar_text(detail: Any, top: int = 8) -> Text:
    """The features whose decoder directions are closest, with their cosine."""
    if detail.similar_ids is None:
        return Text("")
    text = Text("similar (decoder cosine): ", style="bold")
    text.append(
        "  ".join(
            f"#{int(i)} {float(c):.2f}" for i, c in zip(detail.similar_ids[:top], detail.similar_cos[:top], strict=True)
        )
    )
    return text


def _tok(vocab: list[str], i: int) -> str:
    return repr(visible(token_text(vocab, i)))[1:-1]


def histogram_series(detail: Any) -> tuple[list[float], list[int]]:
    """Bin edges and counts of the non-zero activations."""
    return [float(e) for e in detail.hist_edges], [int(c) for c in detail.hist_counts]
