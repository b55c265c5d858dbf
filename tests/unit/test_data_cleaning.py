"""Cleaning: options round-trip and validation, each transform, filters, dedupe and counters."""

from __future__ import annotations

import json

import pytest

from mistudio_tui.ml.data.cleaning import (
    Cleaner,
    CleaningCounts,
    CleaningOptions,
    clean,
    normalize_whitespace,
    strip_html,
    text_hash,
)

RAW = CleaningOptions(unicode_form="none", strip_control=False, drop_empty=False)


def test_options_json_round_trip() -> None:
    options = CleaningOptions(
        unicode_form="NFKC", normalize_whitespace=True, strip_html=True, min_chars=12, dedupe=True
    )
    restored = CleaningOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert restored == options
    assert CleaningOptions.from_dict({}) == CleaningOptions()
    assert CleaningOptions(unicode_form="nfkc").unicode_form == "NFKC"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"unicode_form": "NFD"}, "'unicode_form' must be one of NFC, NFKC, none, got 'NFD'"),
        ({"min_chars": -1}, "'min_chars' must be a non-negative integer, got -1"),
        ({"min_chars": "5"}, "'min_chars' must be a non-negative integer"),
        ({"dedupe": "yes"}, "'dedupe' must be true or false, got 'yes'"),
        ({"lowercase": True}, "unknown cleaning option 'lowercase'"),
    ],
)
def test_invalid_options_are_explained(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CleaningOptions.from_dict(data)


def test_unicode_forms() -> None:
    text = "cafe\u0301 \ufb01le \u2460"
    assert Cleaner(CleaningOptions(unicode_form="none")).transform(text) == text
    assert Cleaner(CleaningOptions(unicode_form="NFC")).transform(text) == "caf\u00e9 \ufb01le \u2460"
    assert Cleaner(CleaningOptions(unicode_form="NFKC")).transform(text) == "caf\u00e9 file 1"


def test_whitespace_normalisation_keeps_paragraphs() -> None:
    text = "  Title \t here\r\n\r\n\r\n\n  body\u00a0 text  \nnext line \n"
    assert normalize_whitespace(text) == "Title here\n\nbody text\nnext line"
    assert Cleaner(CleaningOptions(normalize_whitespace=False)).transform(text) == text


def test_strip_html_removes_tags_scripts_and_decodes_entities() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head>"
        "<body><p>Fish &amp; chips &lt;3</p><script>alert('x')</script>"
        "<div>caf&eacute;<br/>next</div><!-- comment --></body></html>"
    )
    assert strip_html(html) == "T\nFish & chips <3\ncafé\nnext\n"
    assert strip_html("a < b and c > d") == "a < b and c > d"
    assert strip_html("no markup at all") == "no markup at all"


def test_control_characters_are_stripped_but_newlines_and_tabs_kept() -> None:
    text = "a\x00b\x07c\td\ne\rf\x1b[0m\x7fg\x85h"
    assert Cleaner(CleaningOptions()).transform(text) == "abc\td\ne\rf[0mgh"
    assert Cleaner(RAW).transform(text) == text


def test_lone_surrogates_always_become_replacement_characters() -> None:
    cleaned = Cleaner(RAW).transform("ok \ud800 end")
    assert cleaned == "ok \ufffd end"
    cleaned.encode("utf-8")


def test_filters_and_counts() -> None:
    options = CleaningOptions(normalize_whitespace=True, min_chars=5, dedupe=True)
    docs = ["hello world", "   ", "", "tiny", "hello   world", "another doc", "hello world\n"]
    counts = CleaningCounts()
    kept = list(clean(docs, options, counts))
    assert kept == ["hello world", "another doc"]
    assert counts.dropped() == {"empty": 2, "too_short": 1, "duplicate": 2}
    assert counts.seen == len(docs)
    assert counts.kept + sum(counts.dropped().values()) == counts.seen


def test_nothing_is_dropped_when_filters_are_off() -> None:
    docs = ["", "x", "x"]
    assert list(clean(docs, RAW)) == docs


def test_dedupe_remembers_fixed_size_hashes_not_texts() -> None:
    cleaner = Cleaner(CleaningOptions(dedupe=True))
    big = "long document " * 10_000
    assert cleaner.process(big) == big
    assert cleaner.process(big) is None
    assert all(isinstance(h, int) and 0 <= h < 2**64 for h in cleaner._seen)
    assert text_hash(big) in cleaner._seen


def test_remember_marks_texts_as_seen() -> None:
    cleaner = Cleaner(CleaningOptions(dedupe=True))
    cleaner.remember("seen before")
    assert cleaner.process("seen before") is None
    assert cleaner.process("new") == "new"
    assert cleaner.counts.duplicate == 1


def test_counts_round_trip() -> None:
    counts = CleaningCounts(seen=5, kept=2, empty=1, too_short=1, duplicate=1)
    assert CleaningCounts.from_dict(json.loads(json.dumps(counts.to_dict()))) == counts
