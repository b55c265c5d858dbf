"""Prompt construction: excerpt marks, 0-10 normalisation, example selection, templates and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio_tui.labeling.prompts import (
    TemplateError,
    build_explanation_messages,
    builtin_templates,
    crop,
    format_activating_example,
    normalise_activations,
    render_tokens,
    resolve_template,
    select_examples,
    user_templates_dir,
)
from mistudio_tui.labeling.types import Example, FeatureRecord, LabelingSettings
from tests.chat_server import make_record

SETTINGS = LabelingSettings(base_url="http://localhost:8000/v1", model="m")


def test_normalise_activations_scales_to_0_10_against_the_feature_max() -> None:
    assert normalise_activations([0.0, 1.0, 2.5, 5.0, -3.0], 5.0) == [0, 2, 5, 10, 0]
    assert normalise_activations([1.0, 2.0], 0.0) == [0, 0]
    assert max(normalise_activations([7.0, 20.0], 10.0)) == 10  # above the recorded max is clipped


def test_render_tokens_marks_runs_and_keeps_leading_space_outside() -> None:
    tokens = ["The", " New", " York", " Times", " said", "\n", ">>"]
    marked = [False, True, True, False, False, False, False]
    assert render_tokens(tokens, marked) == "The <<New York>> Times said\\n> >"


def test_activating_example_marks_tokens_and_lists_their_levels() -> None:
    example = Example([" the", " cat", " sat", " on", " the", " mat"], [0.0, 4.0, 0.1, 0.0, 0.0, 8.0])
    text = format_activating_example(example, 8.0, 3)
    first, second = text.splitlines()
    assert first == "Example 3: the <<cat>> sat on the <<mat>>"  # 0.1/8 rounds to 0: not marked
    assert second == 'Activations: "cat" 5, "mat" 10'


def test_crop_keeps_the_peak_with_more_context_before_it() -> None:
    tokens = [f" t{i}" for i in range(100)]
    acts = [0.0] * 100
    acts[90] = 3.0
    cropped = crop(Example(tokens, acts), 20)
    assert len(cropped.tokens) == 20
    assert cropped.activations[cropped.peak] == 3.0
    assert cropped.peak > 10  # most of the window is context before the peak
    assert crop(Example(tokens[:5], acts[:5]), 20).tokens == tokens[:5]


def test_select_examples_mixes_top_and_quantile_and_drops_silent_ones() -> None:
    def ex(peak: float) -> Example:
        return Example([" a", " b"], [0.0, peak])

    record = FeatureRecord(
        index=0,
        top_examples=[ex(10 - i * 0.1) for i in range(20)] + [ex(0.0)],
        quantile_examples=[ex(3 - i * 0.1) for i in range(20)],
    )
    chosen = select_examples(record, 10)
    peaks = [e.max_activation for e in chosen]
    assert len(chosen) == 10
    assert sum(p > 5 for p in peaks) == 5 and sum(p < 5 for p in peaks) == 5
    assert peaks == sorted(peaks, reverse=True)
    assert 0.0 not in peaks
    only_top = FeatureRecord(index=1, top_examples=[ex(1.0 + i) for i in range(4)])
    assert len(select_examples(only_top, 10)) == 4


def test_explanation_prompt_shows_marked_examples_and_optional_logits() -> None:
    record = make_record(7, "apple")
    template = resolve_template("default", "explain")
    messages = build_explanation_messages(record, template, SETTINGS)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.count("<<apple") == user.count("<<")  # only the activating word is marked
    assert "Example 10:" in user and "Example 11:" not in user
    assert '"apples"' in user and '"zzz"' in user
    assert "{" not in messages[0]["content"] + user.replace('"', "")  # every placeholder filled
    without_logits = build_explanation_messages(
        record, template, LabelingSettings(base_url="http://x", model="m", include_logits=False)
    )
    assert '"apples"' not in without_logits[1]["content"]


def test_a_feature_without_activating_examples_cannot_be_explained() -> None:
    record = FeatureRecord(index=4, top_examples=[Example([" a"], [0.0])])
    with pytest.raises(ValueError, match="feature 4 has no activating examples"):
        build_explanation_messages(record, resolve_template("default", "explain"), SETTINGS)


def test_builtin_templates_have_versions_and_kinds() -> None:
    templates = builtin_templates()
    assert {"default", "detection", "fuzzing"} <= set(templates)
    assert templates["default"].prompt_version.startswith("default/")
    assert {t.kind for t in templates.values()} == {"explain", "detection", "fuzzing"}


USER_TEMPLATE = '''
name = "terse"
version = "2024-06"
kind = "explain"
system = "Explain the feature. Reply with NAME: and DESCRIPTION: lines."
user = """{examples}

{logits}"""
'''


def test_user_template_found_by_name_in_home_and_by_path(tmp_path: Path) -> None:
    folder = user_templates_dir()
    folder.mkdir(parents=True)
    (folder / "terse.toml").write_text(USER_TEMPLATE)
    template = resolve_template("terse", "explain")
    assert template.prompt_version == "terse/2024-06"
    other = tmp_path / "elsewhere.toml"
    other.write_text(USER_TEMPLATE)
    assert resolve_template(str(other), "explain").source == str(other)
    messages = build_explanation_messages(make_record(1, "river"), template, SETTINGS)
    assert messages[1]["content"].startswith("Example 1:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name = 'x'\nversion = '1'\nkind = 'explain'\nuser = 'NAME: DESCRIPTION:'",
            "lacks required placeholder",
        ),
        (
            "name = 'x'\nversion = '1'\nkind = 'explain'\nuser = '{examples} {oops}'",
            r"unknown placeholder\(s\) \{oops\}",
        ),
        ("name = 'x'\nversion = '1'\nkind = 'explain'\nuser = '{examples}'", "NAME:"),
        (
            "name = 'x'\nkind = 'explain'\nuser = '{examples} NAME: DESCRIPTION:'",
            "needs a non-empty string `version`",
        ),
        ("name = 'x'\nversion = '1'\nkind = 'poetry'\nuser = '{examples}'", "kind 'poetry'"),
        ("name = 'x'\nversion = '1'\nkind = 'detection'\nuser = '{examples}'\ncolour = 1", "unknown key"),
        ("name = 'x\nversion", "not valid TOML"),
        (
            "name = 'default'\nversion = '9'\nkind = 'explain'\nuser = '{examples} NAME: DESCRIPTION:'",
            "built-in",
        ),
    ],
)
def test_bad_template_files_give_one_clear_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TemplateError, match=message) as info:
        resolve_template(str(path), "explain" if "detection" not in text else "detection")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_or_wrong_kind_templates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown prompt template 'nope'"):
        resolve_template("nope", "explain")
    with pytest.raises(TemplateError, match="is of kind 'detection'; expected kind 'explain'"):
        resolve_template("detection", "explain")
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        resolve_template(str(tmp_path / "missing.toml"), "explain")


def test_dense_examples_list_only_their_strongest_activations() -> None:
    tokens = [f" w{i}" for i in range(30)]
    acts = [float(i + 1) for i in range(30)]
    listed = format_activating_example(Example(tokens, acts), 30.0, 1).splitlines()[1]
    assert listed.count('"') == 2 * 12
    assert '"w29" 10' in listed and '"w0"' not in listed
