"""History ring buffers and the monitor refresh interval setting."""

from __future__ import annotations

import pytest

from mistudio_tui.monitor.history import DEFAULT_INTERVAL, INTERVAL_ENV, History, monitor_interval


def test_series_keep_the_newest_maxlen_values_each() -> None:
    history = History(maxlen=3)
    for step in range(5):
        history.record({"gpu0.util": step, "cpu": 10 * step})
    history.append("ram", 50.0)
    assert history.series("gpu0.util") == [2.0, 3.0, 4.0]
    assert history.series("cpu") == [20.0, 30.0, 40.0]
    assert history.series("ram") == [50.0]
    assert history.last("cpu") == 40.0
    assert history.names() == ["gpu0.util", "cpu", "ram"]
    assert len(history) == 3 and "ram" in history


def test_unknown_values_and_series() -> None:
    history = History(maxlen=4)
    history.append("gpu0.temp", None)
    history.record({"gpu0.util": None, "gpu1.util": 5})
    assert "gpu0.temp" not in history and "gpu0.util" not in history
    assert history.series("missing") == []
    assert history.last("missing") is None
    history.forget("gpu1.util")
    history.forget("never-there")
    assert list(history) == []


def test_returned_series_is_a_copy() -> None:
    history = History(maxlen=2)
    history.append("cpu", 1.0)
    history.series("cpu").append(99.0)
    assert history.series("cpu") == [1.0]


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxlen"):
        History(maxlen=0)


def test_interval_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert monitor_interval() == DEFAULT_INTERVAL
    monkeypatch.setenv(INTERVAL_ENV, "0.25")
    assert monitor_interval() == 0.25


@pytest.mark.parametrize("raw", ["fast", "0", "-1", "nan", "inf"])
def test_bad_interval_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(INTERVAL_ENV, raw)
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        monitor_interval()
