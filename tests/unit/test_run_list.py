"""The runs list: filter language, sorting with missing values last, grouping, sparklines and their cache."""

from __future__ import annotations

import pytest

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization, Training
from mistudio_tui.services import run_list
from mistudio_tui.ui.widgets.sparkline import BLOCKS, SparklineCache, sparkline


@pytest.fixture
def runs(studio):
    ds = Dataset.create(name="stories", status="ready")
    lm = LanguageModel.create(name="gpt2-small", status="ready")
    tok = Tokenization.create(dataset=ds, model=lm, name="stories-ctx64", status="ready")
    other = LanguageModel.create(name="pythia-70m", status="ready")

    def make(name, status, loss, **kw):
        return Training.create(name=name, status=status, loss=loss, model=kw.pop("model", lm), tokenization=tok, **kw)

    return {
        "a": make("alpha", "running", 0.3, tags="baseline,wide", d_sae=512),
        "b": make("beta", "completed", 0.1, group_name="multi", d_sae=256),
        "c": make("gamma", "failed", None, model=other, tags="ablation", d_sae=1024),
        "d": make("delta", "completed", 0.2, group_name="multi", d_sae=128),
    }


def names(rows):
    return [r.training.name for r in rows]


def test_filter_terms_combine_with_and_values_with_or(runs):
    rows = run_list.load_rows()
    pick = lambda text: sorted(names(r for r in rows if run_list.matches(r, run_list.parse_filter(text))))  # noqa: E731
    assert pick("state:running") == ["alpha"]
    assert pick("state:completed,failed") == ["beta", "delta", "gamma"]
    assert pick("model:pythia") == ["gamma"]
    assert pick("dataset:stories") == ["alpha", "beta", "delta", "gamma"]
    assert pick("tag:baseline") == ["alpha"]
    assert pick("group:multi state:completed") == ["beta", "delta"]
    assert pick("group:multi elt") == ["delta"]
    assert pick("") == ["alpha", "beta", "delta", "gamma"]


def test_arch_filter_and_sort_use_the_shown_name_of_old_and_new_rows(runs):
    Training.update(architecture="standard").where(Training.id == runs["a"].id).execute()  # a ReLU-L1 run today
    Training.update(architecture="relu").where(Training.id == runs["c"].id).execute()  # one stored before
    rows = run_list.load_rows()
    pick = lambda text: sorted(names(r for r in rows if run_list.matches(r, run_list.parse_filter(text))))  # noqa: E731
    assert pick("arch:relu") == pick("arch:standard") == ["alpha", "gamma"]
    assert run_list.SORT_KEYS["arch"](Training.get_by_id(runs["a"].id)) == "relu"


def test_unknown_filter_key_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown filter 'colour'.*state:"):
        run_list.parse_filter("colour:red")


def test_sort_by_any_column_puts_missing_values_last_and_keeps_groups_together(runs):
    rows = run_list.load_rows()
    assert names(run_list.sort_rows(rows, "loss")) == ["beta", "delta", "alpha", "gamma"]
    # descending: alpha (0.3) first, then the group of beta/delta where its first member stands; gamma (no loss) last
    assert names(run_list.sort_rows(rows, "loss", descending=True)) == ["alpha", "delta", "beta", "gamma"]
    by_width = names(run_list.sort_rows(rows, "width"))
    assert by_width == ["delta", "beta", "alpha", "gamma"]
    with pytest.raises(ValueError, match="unknown sort column"):
        run_list.sort_rows(rows, "colour")


def test_group_members_are_pulled_next_to_the_first():
    class T:
        def __init__(self, name, group):
            self.name, self.group_name = name, group

    rows = [run_list.RunRow(T(n, g), "", "") for n, g in [("x", "g"), ("y", None), ("z", "g"), ("w", None)]]
    assert [r.training.name for r in run_list.group_rows(rows)] == ["x", "z", "y", "w"]


def test_sparkline_maps_low_to_high_blocks_and_averages_into_the_width():
    line = sparkline([1, 2, 3, 4, 5, 6, 7, 8], 4)
    assert len(line) == 4 and line[0] == BLOCKS[0] and line[-1] == BLOCKS[-1]
    assert list(line) == sorted(line)
    assert sparkline([5, 5, 5], 10) == BLOCKS[len(BLOCKS) // 2] * 3
    assert sparkline([], 8) == ""


def test_sparkline_cache_recomputes_only_when_the_run_advances(studio):
    tr = Training.create(name="r", status="running")
    mq.record_metrics(tr.id, [{"step": s, "loss": 10.0 - s} for s in range(5)])
    cache = SparklineCache()
    first = cache.get(tr.id, 4, 6)
    assert cache.get(tr.id, 4, 6) == first and cache.computed == 1
    mq.record_metrics(tr.id, [{"step": s, "loss": 100.0} for s in range(5, 10)])
    second = cache.get(tr.id, 9, 6)
    assert cache.computed == 2 and second != first and second[-1] == BLOCKS[-1]


def test_progress_history_gives_steps_per_second_and_an_eta_only_while_running(studio):
    tr = Training.create(name="p", status="running", total_tokens=1_000_000, config={"train": {"batch_size": 100}})
    mq.record_metrics(tr.id, [{"step": s, "tokens": s * 100, "tokens_per_s": 500.0 + s} for s in range(1, 11)])
    history = mq.progress_history(Training.get_by_id(tr.id))
    assert history.tokens_per_step == 100
    assert history.steps == list(range(1, 11)) and history.steps_per_s[0] == 5.01
    assert history.eta_s == (1_000_000 - 1000) / 510.0
    Training.update(status="completed").where(Training.id == tr.id).execute()
    assert mq.progress_history(Training.get_by_id(tr.id)).eta_s is None
