"""Run names that tell runs apart: short defaults, cells cut in the middle, numbers fitted whole."""

from __future__ import annotations

import re

from mistudio_tui.services.trainings import default_name
from mistudio_tui.ui.format import middle, num_fit


def test_default_names_are_short_and_name_architecture_layer_and_width(studio):
    names = {default_name("topk", "blocks.0.hook_resid_post", 1024) for _ in range(20)}
    assert all(re.fullmatch(r"topk-L0-1k-[0-9a-f]{3}", name) for name in names)
    assert len(names) > 1  # a random suffix
    assert re.fullmatch(r"relu-L11-16k-[0-9a-f]{3}", default_name("relu", "encoder.layer.11.output", 16384))
    assert re.fullmatch(r"jumprelu-acts-512-[0-9a-f]{3}", default_name("jumprelu", None, 512))


def test_middle_keeps_the_distinguishing_end():
    names = [f"topk-blocks.0.hook_resid_post-1024-{n}" for n in (2, 3, 4)] + ["topk-blocks.0.hook_resid_post-1024"]
    for width in (13, 16, 22):
        cut = [middle(name, width) for name in names]
        assert len(set(cut)) == len(names) and all(len(c) <= width and "…" in c for c in cut)
    assert middle("short", 10) == "short"


def test_numbers_fit_their_cell_whole():
    assert num_fit(0.000176, 6) == "1.8e-4"
    assert num_fit(0.937, 6) == "0.937"
    assert num_fit(123456.0, 6) == "1.23e5"
    assert num_fit(None, 6) == "-"
    assert all(len(num_fit(x, 6)) <= 6 for x in (1e-12, -0.000176, 99999.5, 3.14159))
