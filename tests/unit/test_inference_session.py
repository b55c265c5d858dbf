"""The persistent inference session: a spawned worker, request routing, errors, restart after a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mistudio_tui.inference.session import InferenceError, InferenceSession
from tests.unit.steering_world import PLANTED, make_world


def test_session_serves_streams_reports_errors_and_survives_a_killed_worker(
    mistudio_home: Path, tiny_lm_dir: Path
) -> None:
    world = make_world(mistudio_home, tiny_lm_dir)
    session = InferenceSession(mistudio_home)
    try:
        first = session.call("ping", timeout=120)["pid"]
        assert first == session.pid and first != os.getpid()
        stream = session.stream(
            "generate", training_id=world.training_id, prompt="once upon a time",
            interventions=[{"feature": PLANTED, "strength": 0.0}], max_tokens=5, seed=1,
        )  # fmt: skip
        items = list(stream)
        final = items[-1]
        assert final is stream.result
        assert final["texts"]["normal"] == final["texts"]["steered:0"]
        assert {p["variant"] for p in items[:-1]} <= {"normal", "steered:0"}
        with pytest.raises(InferenceError, match="no training with id or name '999'"):
            session.call("top_features", training_id=999, text="hi")
        with pytest.raises(InferenceError, match="unknown inference op 'nope'"):
            session.call("nope")
        with pytest.raises(InferenceError, match="bad parameters for top_features"):
            session.call("top_features", training_id=world.training_id)
        running = session.stream(
            "generate", training_id=world.training_id, prompt="once", temperature=0.0, max_tokens=60,
            interventions=[{"feature": PLANTED, "strength": 1.0}], strengths=[1.0, 2.0, 3.0, 4.0, 5.0],
        )  # fmt: skip
        next(running)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(InferenceError, match=r"inference worker was killed by SIGKILL \(out of memory\?\); see "):
            list(running)
        again = session.call("top_features", training_id=world.training_id, text="the cat", k=2)
        assert session.pid not in (None, first)
        assert len(again["tokens"]) == len(again["top"])
    finally:
        session.close()
    assert (mistudio_home / "logs" / "inference.log").is_file()
    with pytest.raises(InferenceError, match="closed"):
        session.call("ping")
