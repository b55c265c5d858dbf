"""Error guidance for failed runs: each common failure maps to its fix; unrelated text maps to nothing."""

from __future__ import annotations

import pytest

from mistudio_tui.services.run_diagnosis import DEAD_FEATURES, DEAD_FEATURES_WITH_AUXK, diagnose


@pytest.mark.parametrize(
    ("error", "log", "fix_word"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB", [], "smaller batch"),
        ("the worker was killed by SIGKILL (out of memory?)", [], "smaller batch"),
        ("ValueError: loss is nan at step 120", [], "lower learning rate"),
        (None, ["step 40 loss inf", "RuntimeError: training diverged"], "lower learning rate"),
        ("FileNotFoundError: [Errno 2] No such file or directory: 'acts/shard-00003.safetensors'", [], "re-extract"),
        ("activation set manifest not found in /srv/acts/1", [], "re-extract"),
        ("AssertionError: Torch not compiled with CUDA enabled", [], "device 'auto' or 'cpu'"),
    ],
)
def test_common_failures_get_their_fix(error, log, fix_word):
    found = diagnose(error, log)
    assert any(fix_word in d.fix for d in found), found


def test_many_dead_features_suggest_auxk_even_without_an_error():
    assert diagnose(None, [], dead_fraction=0.8) == [DEAD_FEATURES]
    # a TopK run already trains with AuxK: suggesting to enable it would be wrong
    assert diagnose(None, [], dead_fraction=0.8, uses_auxk=True) == [DEAD_FEATURES_WITH_AUXK]
    assert "AuxK" in DEAD_FEATURES.fix and "smaller width" in DEAD_FEATURES.fix
    assert diagnose(None, [], dead_fraction=0.05) == []


def test_unrelated_errors_and_ordinary_log_words_match_nothing():
    assert diagnose("ValueError: k=40 must be between 1 and the SAE width 32", ["INFO starting", "info: step 3"]) == []
    assert diagnose(None, ["loading finance dataset", "nanoGPT tokenizer"]) == []


def test_each_cause_is_listed_once_however_often_it_appears():
    found = diagnose("CUDA out of memory", ["CUDA out of memory", "OutOfMemoryError"])
    assert len(found) == 1
