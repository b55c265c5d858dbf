"""CLI options: a bad value is named once, in one line."""

from __future__ import annotations

import pytest


def test_a_bad_count_option_is_named_once(capsys):
    from mistudio_tui.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--activations", "1", "--tokens", "abc"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.count("--tokens") == 1 and "'abc' is not a count" in err, err
