"""Clean documents: normalise unicode and whitespace, strip HTML and control characters, filter, dedupe."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal, cast

UNICODE_FORMS = ("NFC", "NFKC", "none")

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CRLF = re.compile(r"\r\n?")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class CleaningOptions:
    """How documents are cleaned; recorded with the dataset as JSON (`to_dict` / `from_dict`)."""

    unicode_form: str = "NFC"
    normalize_whitespace: bool = False
    strip_html: bool = False
    strip_control: bool = True
    drop_empty: bool = True
    min_chars: int = 0
    dedupe: bool = False

    def __post_init__(self) -> None:
        form = self.unicode_form
        canonical = {f.lower(): f for f in UNICODE_FORMS}.get(form.lower()) if isinstance(form, str) else None
        if canonical is None:
            raise ValueError(f"cleaning option 'unicode_form' must be one of {', '.join(UNICODE_FORMS)}, got {form!r}")
        object.__setattr__(self, "unicode_form", canonical)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"cleaning option {f.name!r} must be true or false, got {value!r}")
        if isinstance(self.min_chars, bool) or not isinstance(self.min_chars, int) or self.min_chars < 0:
            raise ValueError(f"cleaning option 'min_chars' must be a non-negative integer, got {self.min_chars!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleaningOptions:
        """Options from a dict written by `to_dict` (missing keys take defaults, unknown keys are errors)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"cleaning options must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown cleaning option {unknown[0]!r}; expected some of {', '.join(sorted(known))}")
        return cls(**data)


@dataclass
class CleaningCounts:
    """How many documents were seen and kept, and how many were dropped for each reason."""

    seen: int = 0
    kept: int = 0
    empty: int = 0
    too_short: int = 0
    duplicate: int = 0

    def dropped(self) -> dict[str, int]:
        """Dropped documents by reason."""
        return {"empty": self.empty, "too_short": self.too_short, "duplicate": self.duplicate}

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> CleaningCounts:
        return cls(**{f.name: int(data.get(f.name, 0)) for f in dataclasses.fields(cls)})


class _HTMLText(HTMLParser):
    """Collects the text of an HTML fragment: entities decoded, script/style dropped, blocks on new lines."""

    SKIPPED = frozenset({"script", "style"})
    BLOCKS = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
            "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
            "ol", "p", "pre", "section", "table", "td", "th", "title", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def _break(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skip_depth += 1
        elif tag in self.BLOCKS:
            self._break()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """The text content of an HTML document or fragment (tags removed, entities decoded)."""
    if "<" not in text and "&" not in text:
        return text
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def normalize_whitespace(text: str) -> str:
    """Unix newlines, runs of spaces/tabs as one space, at most one blank line, no leading/trailing space."""
    if "\r" in text:
        text = _CRLF.sub("\n", text)
    text = "\n".join([" ".join(line.split()) for line in text.split("\n")])
    return _BLANK_LINES.sub("\n\n", text).strip()


def text_hash(text: str) -> int:
    """A 64-bit hash of `text` (what deduplication remembers instead of the text)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class Cleaner:
    """Applies `CleaningOptions` one document at a time, counting what it drops and why."""

    def __init__(self, options: CleaningOptions, counts: CleaningCounts | None = None) -> None:
        self.options = options
        self.counts = counts if counts is not None else CleaningCounts()
        self._seen: set[int] = set()

    def transform(self, text: str) -> str:
        """The cleaned text (no filtering); lone surrogates, invalid in UTF-8, always become U+FFFD."""
        opts = self.options
        if not text.isascii():
            text = _SURROGATE.sub("\ufffd", text)
        if opts.strip_html:
            text = strip_html(text)
        if opts.unicode_form != "none" and not text.isascii():
            text = unicodedata.normalize(cast(Literal["NFC", "NFKC"], opts.unicode_form), text)  # checked on creation
        if opts.strip_control:
            text = _CONTROL.sub("", text)
        if opts.normalize_whitespace:
            text = normalize_whitespace(text)
        return text

    def remember(self, text: str) -> None:
        """Mark an already kept (cleaned) text as seen, so a later duplicate is dropped."""
        if self.options.dedupe:
            self._seen.add(text_hash(text))

    def process(self, text: str) -> str | None:
        """The cleaned text, or None when it is dropped (the reason is counted)."""
        opts, counts = self.options, self.counts
        counts.seen += 1
        text = self.transform(text)
        if opts.drop_empty and not text.strip():
            counts.empty += 1
            return None
        if len(text) < opts.min_chars:
            counts.too_short += 1
            return None
        if opts.dedupe:
            digest = text_hash(text)
            if digest in self._seen:
                counts.duplicate += 1
                return None
            self._seen.add(digest)
        counts.kept += 1
        return text


def clean(
    docs: Iterable[str], options: CleaningOptions = CleaningOptions(), counts: CleaningCounts | None = None
) -> Iterator[str]:
    """Yield the cleaned documents that survive the filters; `counts`, if given, is updated as they stream."""
    cleaner = Cleaner(options, counts)
    for doc in docs:
        kept = cleaner.process(doc)
        if kept is not None:
            yield kept
