"""Parsing explainer and scorer answers in the shapes real models produce."""

from __future__ import annotations

import pytest

from mistudio_tui.labeling.parsing import ParseError, parse_explanation, parse_judgements, strip_reasoning

# (answer as a model wrote it, expected technical name, expected description)
EXPLANATION_SHAPES = [
    (
        'The marked tokens are plural nouns.\nNAME: plural nouns after "the"\n'
        "DESCRIPTION: Fires on plural nouns that directly follow the article 'the'.",
        'plural nouns after "the"',
        "Fires on plural nouns that directly follow the article 'the'.",
    ),
    (
        "### Analysis\nMost examples are dates.\n\n**NAME:** ISO date separators\n"
        "**DESCRIPTION:** Detects the hyphens inside ISO-8601 dates such as 2024-01-31.",
        "ISO date separators",
        "Detects the hyphens inside ISO-8601 dates such as 2024-01-31.",
    ),
    (
        "**Name**: `Python return keyword`\n**Description**: The feature fires on `return` in Python functions.",
        "Python return keyword",
        "The feature fires on `return` in Python functions.",
    ),
    (
        '```json\n{"name": "capital cities",\n "description": "Names of capital cities after \'capital of\'."}\n```',
        "capital cities",
        "Names of capital cities after 'capital of'.",
    ),
    (
        'Here is my answer: {"technical": "counting words", "semantic": "Number words in a counting sequence."}',
        "counting words",
        "Number words in a counting sequence.",
    ),
    (
        "<think>\nLet me look. NAME: something wrong\nDESCRIPTION: not this\n</think>\n\n"
        "NAME: animal subjects\nDESCRIPTION: Animals that are the subject of a sentence.",
        "animal subjects",
        "Animals that are the subject of a sentence.",
    ),
    (
        "the model reasoned here without an opening tag</think>NAME: closing brackets\n"
        "DESCRIPTION: Closing parentheses in code.",
        "closing brackets",
        "Closing parentheses in code.",
    ),
    (
        "NAME: “quoted name”.\nDESCRIPTION: Fires on quoted speech\ncontinuing onto a second line.\n\nHope this helps!",
        "quoted name",
        "Fires on quoted speech continuing onto a second line.",
    ),
    (
        "1. NAME: sentence-final periods\n2. DESCRIPTION: The full stop ending a sentence.",
        "sentence-final periods",
        "The full stop ending a sentence.",
    ),
    (
        "Technical name: negation words\nDescription: Words like 'not' and 'never' that negate a clause.",
        "negation words",
        "Words like 'not' and 'never' that negate a clause.",
    ),
]


@pytest.mark.parametrize(("answer", "technical", "semantic"), EXPLANATION_SHAPES)
def test_parse_explanation_reads_real_world_shapes(answer: str, technical: str, semantic: str) -> None:
    parsed = parse_explanation(answer)
    assert parsed.technical == technical
    assert parsed.semantic == semantic


def test_the_last_name_line_wins_over_earlier_mentions() -> None:
    answer = "A first guess would be NAME: nouns\nbut no.\nNAME: proper nouns\nDESCRIPTION: Capitalised names."
    assert parse_explanation(answer).technical == "proper nouns"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("", "empty"),
        ("I think this feature is about numbers.", "no NAME: or DESCRIPTION:"),
        ("DESCRIPTION: Numbers in text.", "no NAME: line"),
        ("NAME: numbers", "no DESCRIPTION: line"),
        ("<think>I am still thinking about NAME: and", "<think>"),
        ("NAME: <a short technical name>\nDESCRIPTION: <one or two sentences>", "placeholder"),
        ("NAME:\nDESCRIPTION: something", "empty"),
    ],
)
def test_unusable_answers_raise_a_clear_parse_error(answer: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(")):
        parse_explanation(answer)


def test_strip_reasoning_removes_every_think_block() -> None:
    assert strip_reasoning("<think>a</think>x<thinking>b</thinking>y") == "xy"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("[1, 0, 1]", [True, False, True]),
        ("Reasoning about [1] first.\nFinal: [0, 0, 1]", [False, False, True]),
        ('```json\n["yes", "no", "yes"]\n```', [True, False, True]),
        ("[true, false, false]", [True, False, False]),
        ("1. Yes\n2. No\n3. yes", [True, False, True]),
        ("**Example 1:** yes\n**Example 2:** no\n**Example 3:** no", [True, False, False]),
        ("<think>maybe [0, 0, 0]? no...</think>\n[1,1,0]", [True, True, False]),
    ],
)
def test_parse_judgements_reads_lists_and_numbered_lines(answer: str, expected: list[bool]) -> None:
    assert parse_judgements(answer, 3) == expected


@pytest.mark.parametrize("answer", ["[1, 0]", "I cannot tell.", "1. yes\n2. no", "[1, maybe, 0]"])
def test_parse_judgements_rejects_wrong_counts_and_garbage(answer: str) -> None:
    with pytest.raises(ParseError, match="expected a list of 3 answers"):
        parse_judgements(answer, 3)


def test_cleaning_keeps_code_and_underscores_inside_values() -> None:
    parsed = parse_explanation("NAME: __dunder methods__\nDESCRIPTION: Fires on `__init__`")
    assert parsed.technical == "dunder methods"
    assert parsed.semantic == "Fires on `__init__`"
