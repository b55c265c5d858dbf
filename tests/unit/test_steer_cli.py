"""`mistudio steer` and `mistudio analyze` end to end (through the inference worker), and presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import SteeringPreset
from mistudio_tui.services import steering as svc
from tests.unit.steering_world import PLANTED, make_world


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_steer_strength_zero_gives_identical_texts_and_exports(
    mistudio_home: Path, tiny_lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_world(mistudio_home, tiny_lm_dir)
    out = tmp_path / "cmp.txt"
    code, data = _run(
        capsys, "steer", "--training", "planted", "--feature", str(PLANTED), "--strength", "0", "--strength", "60",
        "--prompt", "once upon a time", "--max-tokens", "6", "--seed", "4", "--export", str(out),
    )  # fmt: skip
    assert code == 0
    assert set(data["texts"]) == {"normal", "steered:0", "steered:60"}
    assert data["texts"]["normal"] == data["texts"]["steered:0"]
    assert data["texts"]["normal"] != data["texts"]["steered:60"]
    assert "== steered:60 ==" in out.read_text()


def test_steer_errors_are_one_line(mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_world(mistudio_home, tiny_lm_dir)
    code, data = _run(capsys, "steer", "--training", "planted", "--feature", "99", "--strength", "1", "--prompt", "x")
    assert code == 1 and "feature 99 is out of range" in data["error"]
    code, data = _run(capsys, "steer", "--training", "nope", "--feature", "1", "--strength", "1", "--prompt", "x")
    assert code == 1 and "no training with id or name 'nope'" in data["error"]
    ablate = ("analyze", "ablate", "--training", "planted", "--feature", "3", "--text", "a", "--mode", "clamp")
    code, data = _run(capsys, *ablate)
    assert code == 1 and data["error"] == "--mode clamp needs --value"


def test_presets_round_trip(mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(mistudio_home, tiny_lm_dir)
    code, saved = _run(
        capsys, "steer", "presets", "save", "happy", "--training", "planted", "--feature", "3", "--feature", "5",
        "--strength", "2.5", "--method", "clamp", "--prompt", "hello", "--temperature", "0",
    )  # fmt: skip
    assert code == 0 and saved["features"] == [3, 5]
    request = svc.load_preset("happy")
    assert request.training_id == world.training_id and request.method == "clamp" and request.temperature == 0
    params = request.params()
    assert [i["strength"] for i in params["interventions"]] == [2.5, 2.5] and params["strengths"] is None
    code, rows = _run(capsys, "steer", "presets", "list")
    assert [r["name"] for r in rows] == ["happy"]
    code, _ = _run(
        capsys, "steer", "presets", "save", "happy", "--training", "planted", "--feature", "1", "--strength", "1"
    )
    assert code == 1
    code, shown = _run(capsys, "steer", "presets", "show", "happy")
    assert shown["config"]["prompt"] == "hello"
    code, _ = _run(capsys, "steer", "presets", "delete", "happy", "--yes")
    assert code == 0 and SteeringPreset.select().count() == 0


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="no strength"):
        svc.SteeringRequest(training_id=1, features=[1], strengths=[])
    with pytest.raises(ValueError, match="positions"):
        svc.SteeringRequest(training_id=1, features=[1], strengths=[1], positions="middle")
    sweep = svc.SteeringRequest(training_id=1, features=[1, 2], strengths=[0.5, 1.0]).params()
    assert sweep["strengths"] == [0.5, 1.0]


class InProcessSession:
    """Serves the session's ops with an in-process InferenceServer (the spawned path is tested above)."""

    def __init__(self, home: Path) -> None:
        from mistudio_tui.inference.server import InferenceServer

        self.server = InferenceServer(home)

    def call(self, op: str, timeout: float | None = 120, **params):
        from mistudio_tui.inference.server import RequestContext

        return getattr(self.server, f"op_{op}")(RequestContext(lambda: False), **params)

    def close(self) -> None:
        pass


def test_analyze_commands(
    mistudio_home: Path, tiny_lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import mistudio_tui.inference.session as session_module

    make_world(mistudio_home, tiny_lm_dir)
    monkeypatch.setattr(session_module, "InferenceSession", InProcessSession)
    base = ("analyze", "ablate", "--training", "planted", "--feature", str(PLANTED), "--text", "once upon a time")
    code, ablation = _run(capsys, *base)
    assert code == 0 and ablation["loss_delta"] == pytest.approx(ablation["loss_ablated"] - ablation["loss_clean"])
    assert main(list(base)) == 0 and "promoted:" in capsys.readouterr().out
    out = tmp_path / "map.json"
    code, mapped = _run(capsys, "analyze", "map", "--training", "planted", "--method", "pca", "--out", str(out))
    assert code == 0 and len(json.loads(out.read_text())["coords"]) == 16 == len(mapped["coords"])
    code, co = _run(
        capsys, "analyze", "cooccurrence", "--training", "planted", "--feature", "0", "--feature", "1",
        "--text", "once upon a time", "--text", "the cat sat",
    )  # fmt: skip
    assert code == 0 and co["features"] == [0, 1] and len(co["counts"]) == 2
    code, similar = _run(capsys, "analyze", "similar", "--training", "planted", "--feature", "3", "--top", "4")
    assert code == 0 and len(similar["similar"]) == 4
    assert main(["analyze", "similar", "--training", "planted", "--feature", "3"]) == 0
    assert "COSINE" in capsys.readouterr().out
