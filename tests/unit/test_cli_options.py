"""CLI options: a bad value is named once, in one line."""

from __future__ import annotations


def test_a_bad_count_option_is_named_once(capsys):
    from mistudio_tui.cli.main import main

    assert main(["train", "--activations", "1", "--tokens", "abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.count("--tokens") == 1 and "'abc' is not a count" in err, err
