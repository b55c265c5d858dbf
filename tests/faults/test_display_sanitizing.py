"""Labels written by an LLM (or anyone) reach the terminal without escape sequences or control characters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db import features as fq
from mistudio_tui.db.models import Feature, FeatureLabel
from mistudio_tui.display import printable
from tests.faults.seeded_home import seed

# OSC 0 (window title), OSC 52 (clipboard write), OSC 8 (hyperlink), CSI clear + colour, 8-bit CSI, CR, BEL, DCS
HOSTILE = (
    "evil\x1b]0;pwned\x07 \x1b]52;c;ZWNobyBoaQ==\x07\x1b[2J\x1b[31mred\x1b[0m \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    " \x9b1Aup\rback\x08 \x1bPq#payload\x1b\\done\x07"
)
SHOWN = "evil red link upback done"
CONTROL = [chr(c) for c in (*range(0, 9), *range(11, 32), *range(127, 160))]


def clean(text: str) -> bool:
    return not any(c in text for c in CONTROL)


def test_printable_drops_sequences_whole_and_keeps_text() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("tab\there\nnext line · ünïcode ★") == "tab\there\nnext line · ünïcode ★"


@pytest.mark.parametrize("argv", [["labels", "show", "fs", "3"], ["features", "list", "fs"]])
def test_cli_printers_show_labels_without_control_characters(capsys, mistudio_home: Path, argv) -> None:
    seed(mistudio_home)
    fq.add_label(1, 3, technical="tech\x1b[5m", semantic=HOSTILE, method="llm", model="m")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert clean(out) and "evil red" in out
    # display only: the stored label is what was written
    assert FeatureLabel.get().semantic == HOSTILE
    assert Feature.get(Feature.index == 3).semantic_label == HOSTILE


def test_an_error_naming_hostile_text_is_clean(capsys, mistudio_home: Path) -> None:
    seed(mistudio_home)
    assert main(["labels", "show", "fs\x1b]0;x\x07", "1"]) == 1
    err = capsys.readouterr().err
    assert clean(err.rstrip("\n")) and "fs" in err


def test_tui_label_renderings_are_clean() -> None:
    from mistudio_tui.ui.widgets.feature_table import FeatureRow, FeatureTable
    from mistudio_tui.ui.widgets.feature_view import feature_header

    when = dt.datetime(2026, 1, 1)
    label = SimpleNamespace(
        technical="tech\x1b[5m", semantic=HOSTILE, is_current=True, score=None, method="llm", model="m", author=""
    )
    label.created_at = when
    detail = SimpleNamespace(index=3, dead=False, density=0.1, count=5, max=1.0, mean_nonzero=0.5)
    header = feature_header(detail, [label]).plain
    assert clean(header.replace("\n", "")) and SHOWN in header
    row = FeatureRow(3, "tech\x1b[5m", HOSTILE, 0.1, 1.0, "tok\x1b]52;c;eA==\x07en", None, False, False)
    for key in ("labels", "top"):
        assert clean(FeatureTable._cell(None, row, key, 80).plain)
