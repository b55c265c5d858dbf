"""`mistudio trainings eval --ground-truth` (MCC and features recovered) and `mistudio synth` (sae_lens worlds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mistudio_tui.cli.main import main
from mistudio_tui.ml.sae.architectures import create_sae
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats import save_saelens

D_IN, FEATURES = 16, 24


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert (code == 0) == ok, captured.out + captured.err
    if not ok:
        assert len(captured.err.strip().splitlines()) == 1, captured.err  # one clear line, no traceback
    return json.loads(captured.out)


def _dictionary(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    planted = torch.randn(FEATURES, D_IN, generator=gen)
    return planted / planted.norm(dim=1, keepdim=True)


def _saved_sae(folder: Path, decoder: torch.Tensor) -> Path:
    """A TopK SAE in the SAELens layout whose decoder rows are `decoder`."""
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=decoder.shape[0], k=4, architecture="topk"), torch.Generator())
    with torch.no_grad():
        sae.W_dec.copy_(decoder)
    return save_saelens(sae, folder, metadata={"hook_name": "synthetic"})


def _register(name: str, folder: Path, d_sae: int):
    from mistudio_tui.db.models import Training

    return Training.create(
        name=name, origin="imported", status="ready", architecture="topk", d_in=D_IN, d_sae=d_sae, path=str(folder)
    )


@pytest.mark.slow
def test_eval_scores_a_planted_decoder_against_the_ground_truth(capsys, studio, tmp_path: Path) -> None:
    planted = _dictionary()
    truth = tmp_path / "truth.safetensors"
    save_file({"gt": planted}, str(truth))
    # the true features, shuffled and sign-flipped, plus 8 extra latents: still a perfect match
    perm = torch.randperm(FEATURES, generator=torch.Generator().manual_seed(1))
    decoder = torch.cat([-planted[perm], _dictionary(seed=7)[:8]])
    _register("planted", _saved_sae(tmp_path / "planted", decoder), FEATURES + 8)
    _register("random", _saved_sae(tmp_path / "random", _dictionary(seed=3)), FEATURES)

    shown = _cli(capsys, "trainings", "eval", "planted", "--ground-truth", str(truth))
    scores = shown["evaluation"]["ground_truth"]
    assert scores["mcc"] == pytest.approx(1.0, abs=1e-6) and scores["recovered"] == 1.0
    assert (scores["features"], scores["latents"]) == (FEATURES, FEATURES + 8)
    assert _cli(capsys, "trainings", "show", "planted")["evaluation"]["ground_truth"] == scores  # stored

    scores = _cli(capsys, "trainings", "eval", "random", "--ground-truth", str(truth))["evaluation"]["ground_truth"]
    assert scores["mcc"] < 0.6 and scores["recovered"] < 0.1

    # people read one line of scores next to the rest of the evaluation
    assert main(["trainings", "eval", "planted", "--ground-truth", str(truth)]) == 0
    out = capsys.readouterr().out
    assert "ground_truth: MCC 1.000 · recovered 100.0% of 24 true features" in out


def test_eval_refuses_a_bad_ground_truth_file_in_one_line(capsys, studio, tmp_path: Path) -> None:
    _register("run", _saved_sae(tmp_path / "sae", _dictionary()), FEATURES)
    wrong_key, wrong_width, text = (tmp_path / n for n in ("key.safetensors", "width.safetensors", "x.safetensors"))
    save_file({"features": _dictionary()}, str(wrong_key))
    save_file({"gt": torch.randn(FEATURES, D_IN + 1)}, str(wrong_width))
    text.write_text("not a tensor file")
    cases = {
        tmp_path / "missing.safetensors": "does not exist",
        wrong_key: "has no tensor 'gt' (it holds features)",
        wrong_width: "the true features have d_in=17, but the SAE has d_in=16",
        text: "is not a readable safetensors file",
    }
    for path, message in cases.items():
        error = _cli(capsys, "trainings", "eval", "run", "--ground-truth", str(path), ok=False)["error"]
        assert message in error, error
    from mistudio_tui.db.models import Job

    assert Job.select().count() == 0  # refused before any job started


def test_eval_without_ground_truth_or_activations_still_asks_for_a_tokenization(capsys, studio, tmp_path) -> None:
    _register("run", _saved_sae(tmp_path / "sae", _dictionary()), FEATURES)
    error = _cli(capsys, "trainings", "eval", "run", ok=False)["error"]
    assert "give a tokenization of its model with --tokenization" in error


def test_ground_truth_line_is_shown_only_when_scores_are_stored() -> None:
    from mistudio_tui.services.trainings import ground_truth_line

    assert ground_truth_line(None) is None and ground_truth_line({"l0": 3.0}) is None
    scores = {"mcc": 0.9512, "recovered": 0.875, "mean_max_cosine": 0.96, "features": 64, "latents": 128}
    line = ground_truth_line({"ground_truth": scores})
    assert line == "MCC 0.951 · recovered 87.5% of 64 true features (|cos| ≥ 0.9) · mean max |cos| 0.960 · 128 latents"


# --- mistudio synth -------------------------------------------------------------------------------------
def test_synth_without_sae_lens_prints_a_one_line_hint(capsys, studio, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # `import sae_lens` now fails, as when it is not installed
    error = _cli(capsys, "synth", "--features", "64", "--d-in", "16", "--tokens", "1000", "--l0", "3", ok=False)[
        "error"
    ]
    assert "pip install -e '.[bench]'" in error and "pip install sae-lens" in error
    from mistudio_tui.db.models import ActivationSet

    assert ActivationSet.select().count() == 0
    from mistudio_tui.ml.activations.synthetic import SynthOptions, build_model

    with pytest.raises(ImportError, match="needs the sae-lens package"):  # the worker says the same
        build_model(SynthOptions(features=64, d_in=16))


def test_synth_refuses_impossible_options_in_one_line(capsys, studio) -> None:
    error = _cli(capsys, "synth", "--features", "64", "--l0", "100", ok=False)["error"]
    assert "--l0 100 is too high for 64 features" in error
    error = _cli(capsys, "synth", "--d-in", "1", ok=False)["error"]
    assert "--d-in must be at least 2" in error


def test_zipf_top_probability_hits_the_target_l0() -> None:
    pytest.importorskip("sae_lens")
    from sae_lens.synthetic.firing_probabilities import zipfian_firing_probabilities

    from mistudio_tui.ml.activations.synthetic import ZIPF_MIN_OVER_MAX, SynthOptions

    for features, l0 in ((64, 4.0), (4096, 32.0)):
        top = SynthOptions(features=features, target_l0=l0).zipf_max_prob()
        probs = zipfian_firing_probabilities(features, max_prob=top, min_prob=top * ZIPF_MIN_OVER_MAX)
        assert float(probs.sum()) == pytest.approx(l0, rel=1e-4)


@pytest.mark.slow
def test_synth_then_train_then_eval_recovers_the_true_features(capsys, studio) -> None:
    pytest.importorskip("sae_lens")
    made = _cli(capsys, "synth", "--features", "64", "--d-in", "16", "--tokens", "20k", "--l0", "3", "--seed", "1")
    truth = Path(made["ground_truth"])
    assert made["origin"] == "synthetic" and made["n_tokens"] == 20_000 and made["d_in"] == 16
    assert truth.name == "ground_truth.safetensors" and truth.parent == Path(made["path"])
    assert made["true_l0"] == pytest.approx(3.0, rel=0.15)

    _cli(
        capsys,
        "train",
        "--activations",
        made["name"],
        "--k",
        "3",
        "--d-sae",
        "128",
        "--tokens",
        "200k",
        "--batch-size",
        "512",
        "--device",
        "cpu",
        "--name",
        "tiny-world",
    )
    # no --ground-truth: the synthetic set's own file is the default
    evaluation = _cli(capsys, "trainings", "eval", "tiny-world")["evaluation"]
    scores = evaluation["ground_truth"]
    assert scores["file"] == str(truth) and (scores["features"], scores["latents"]) == (64, 128)
    assert 0.0 < scores["mcc"] <= 1.0 and 0.0 <= scores["recovered"] <= 1.0
    assert "explained_variance" in evaluation  # the usual reconstruction metrics too


def test_checking_a_ground_truth_file_and_synth_options_imports_no_torch(tmp_path: Path) -> None:
    import subprocess

    truth = tmp_path / "truth.safetensors"
    save_file({"gt": _dictionary()}, str(truth))
    code = (
        "import sys\n"
        "from mistudio_tui.ml.sae.ground_truth_file import ground_truth_shape\n"
        "from mistudio_tui.ml.activations.synthetic import SynthOptions, sae_lens_available\n"
        "import mistudio_tui.services.models, mistudio_tui.services.trainings\n"
        f"print(ground_truth_shape({str(truth)!r}, 16))\n"
        "SynthOptions(features=64, d_in=16, target_l0=3).check(); sae_lens_available()\n"
        "print('HEAVY', [m for m in ('torch', 'sae_lens', 'safetensors.torch') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"({FEATURES}, {D_IN})" in out.stdout and "HEAVY []" in out.stdout
