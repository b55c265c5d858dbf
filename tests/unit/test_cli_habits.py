"""CLI habits: one-line option errors, range checks before any torch, steering sizes and warnings, quiet pipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from tests.unit.steering_world import PLANTED, make_world
from tests.unit.test_steer_cli import InProcessSession as CallSession


class InProcessSession(CallSession):
    """The in-process session, also serving the streaming `generate` op (its partials dropped)."""

    def call(self, op: str, timeout: float | None = 120, **params):
        if op != "generate":
            return super().call(op, timeout, **params)
        from mistudio_tui.inference.server import RequestContext

        return self.server.op_generate(RequestContext(lambda: False), lambda _: None, **params)


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["features", "list", "fs", "--limit", "abc"], ["--limit", "whole number", "'abc'"]),
        (["features", "list", "fs", "--sort", "nosuch"], ["--sort", "'nosuch'", "density"]),
        (["features", "list", "fs", "--limit", "-5"], ["--limit", "-5", "1 or more"]),
        (["steer", "--training", "t", "--feature", "1", "--max-tokens", "99999999"], ["--max-tokens", "4,096"]),
        (["steer", "--strength", "1", "--coefficient", "2"], ["--coefficient", "--strength"]),
        (["analyze", "similar", "--training", "t"], ["--feature"]),
        (["train", "--nosuch"], ["--nosuch"]),
        (["nosuch"], ["'nosuch'"]),
        (["--home"], ["--home", "'mistudio --help'"]),
        (["features"], ["VERB", "'mistudio features --help'"]),
    ],
)
def test_bad_options_are_one_line_naming_the_flag_and_exit_2(
    argv: list[str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("mistudio: error: ") and "usage:" not in lines[0]
    for name in names:
        assert name in lines[0]


def test_bad_option_with_json_is_a_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "list", "fs", "--limit", "abc", "--json"]) == 2
    assert "--limit" in json.loads(capsys.readouterr().out)["error"]


def test_analyze_checks_the_feature_range_before_starting_the_model_worker(
    mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mistudio_tui.inference.session as session_module

    def no_worker(*_a, **_k):
        raise AssertionError("the inference worker was started")

    make_world(mistudio_home, tiny_lm_dir)
    monkeypatch.setattr(session_module, "InferenceSession", no_worker)
    assert main(["analyze", "similar", "--training", "planted", "--feature", "5000"]) == 1
    assert "feature 5000 is out of range" in capsys.readouterr().err
    base = ["--training", "planted", "--feature", "1", "--feature", "99"]
    assert main(["analyze", "ablate", *base, "--text", "a"]) == 1
    assert main(["analyze", "cooccurrence", *base, "--text", "a"]) == 1
    assert capsys.readouterr().err.count("feature 99 is out of range") == 2


def test_a_strength_sweep_prints_each_strengths_added_norm(
    mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mistudio_tui.inference.session as session_module

    make_world(mistudio_home, tiny_lm_dir)
    monkeypatch.setattr(session_module, "InferenceSession", InProcessSession)
    argv = ["steer", "--training", "planted", "--feature", str(PLANTED), "--prompt", "once upon a time"]
    sweep = [*argv, "--strength", "1", "--strength", "4", "--max-tokens", "2"]
    assert main([*sweep, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    one, four = (data["variant_scales"][v][str(PLANTED)]["added_norm"] for v in ("steered:1", "steered:4"))
    assert four == pytest.approx(4 * one) and one > 0
    assert main(sweep) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(f"feature {PLANTED}:"))
    at_one, at_four = line.split("added norm (× the hook's typical norm) ")[1].split(", ")
    assert at_one.endswith(" at strength 1") and at_four.endswith(" at 4")
    assert float(at_four.split()[0]) == pytest.approx(4 * float(at_one.split()[0]), rel=0.01)


def test_coefficients_are_absolute_and_huge_strengths_warn(
    mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mistudio_tui.inference.session as session_module

    make_world(mistudio_home, tiny_lm_dir)
    monkeypatch.setattr(session_module, "InferenceSession", InProcessSession)
    argv = ["steer", "--training", "planted", "--feature", str(PLANTED), "--prompt", "once", "--max-tokens", "1"]
    assert main([*argv, "--coefficient", "2", "--json"]) == 0
    captured = capsys.readouterr()
    scale = json.loads(captured.out)["scales"][str(PLANTED)]
    assert scale["units"] == "absolute"
    assert scale["added_norm"] == pytest.approx(2 * scale["decoder_norm"])
    assert main([*argv, "--strength", "1e9"]) == 0
    err = capsys.readouterr().err
    assert "strength 1e+09" in err and "noise" in err


def test_a_feature_that_never_fired_is_warned_about(
    mistudio_home: Path, tiny_lm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file, save_file

    import mistudio_tui.inference.session as session_module

    world = make_world(mistudio_home, tiny_lm_dir)
    weights = world.sae_dir / "sae_weights.safetensors"
    tensors = load_file(str(weights))
    tensors["b_enc"][5] = -1e6  # feature 5 can never fire
    save_file(tensors, str(weights))
    monkeypatch.setattr(session_module, "InferenceSession", InProcessSession)
    argv = ["steer", "--training", "planted", "--feature", "5", "--prompt", "once", "--max-tokens", "1"]
    assert main([*argv, "--strength", "2"]) == 0
    err = capsys.readouterr().err
    assert "feature 5 never fired" in err and "--coefficient" in err
    assert main([*argv, "--coefficient", "2"]) == 0
    assert "never fired" not in capsys.readouterr().err
    test = ["analyze", "activations", "--training", "planted", "--text", "once upon a time"]
    assert main([*test, "--feature", "5"]) == 0
    assert "feature 5: the feature does not fire on this text (0 on all" in capsys.readouterr().out
    assert main([*test, "--feature", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fires"] is False and "does not fire" in data["note"]
    assert len(data["tokens"]) == len(data["activations"])


def _pipe_into_true(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run `mistudio ARGV | true`: the reader has left before the command writes."""
    code = (
        "import sys, time; time.sleep(0.3); sys.argv = ['mistudio', *sys.argv[1:]];"
        "from mistudio_tui.cli.main import main; raise SystemExit(main())"
    )
    env = {"MISTUDIO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())}
    shell = f'{sys.executable} -c "{code}" {" ".join(argv)} | true; exit ${{PIPESTATUS[0]}}'
    return subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["version", "--json"], 0),
        (["features", "list", "nosuch", "--json"], 1),
        (["features", "list", "fs", "--limit", "abc", "--json"], 2),
    ],
)
def test_json_into_a_pipe_that_closed_exits_quietly(tmp_path: Path, argv: list[str], code: int) -> None:
    """`mistudio … --json | head`: no BrokenPipeError traceback, as Unix tools behave; errors keep their code."""
    out = _pipe_into_true(tmp_path, *argv)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == code
    assert len(out.stderr.splitlines()) == (0 if code == 0 else 1), out.stderr
