"""SAELens release names: resolved through the installed sae-lens's catalogue (no network), downloaded from the hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.cli.main import main
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.jobs.tasks.sae import import_sae as run_import
from mistudio_tui.ml.sae.formats import load_saelens
from mistudio_tui.services import sae_io, sae_releases
from tests import hub_server

loopback_hub = hub_server.loopback_hub
needs_catalogue = pytest.mark.skipif(sae_releases.catalogue_path() is None, reason="sae-lens is not installed")
D_IN, D_SAE = 8, 16


def _write_gemma_scope(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """A Gemma Scope params.npz of random JumpReLU weights; returns them."""
    gen = torch.Generator().manual_seed(seed)
    t = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=gen),
        "W_dec": torch.randn(D_SAE, D_IN, generator=gen),
        "b_enc": torch.randn(D_SAE, generator=gen) * 0.1,
        "b_dec": torch.randn(D_IN, generator=gen),
        "threshold": torch.rand(D_SAE, generator=gen) * 0.5,
    }
    np.savez(path, **{k: v.numpy() for k, v in t.items()})
    return t


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> object:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert (code == 0) == ok, out
    return json.loads(out)


@needs_catalogue
def test_resolve_through_the_installed_catalogue() -> None:
    found = sae_releases.resolve("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    assert (found.repo_id, found.layout) == ("google/gemma-scope-2b-pt-res", "gemma_scope")
    assert found.path.startswith("layer_12/width_16k/average_l0_")
    llama = sae_releases.resolve("llama_scope_lxr_8x", "l0r_8x")
    assert llama.layout == "llama_scope" and llama.norm_scaling_factor and llama.norm_scaling_factor > 0
    with pytest.raises(ValueError, match="did you mean gemma-scope-2b-pt-res-canonical"):
        sae_releases.resolve("gemma-scope-2b-pt-res-canonica", "layer_12/width_16k/canonical")
    with pytest.raises(ValueError, match="has no SAE 'layer_99/width_16k/canonical'"):
        sae_releases.resolve("gemma-scope-2b-pt-res-canonical", "layer_99/width_16k/canonical")
    with pytest.raises(ValueError, match="'mwhanna_transcoder' loader, a layout miStudio does not import"):
        sae_releases.resolve("mwhanna-qwen3-4b-transcoders", "layer_0")
    with pytest.raises(ValueError, match=r"per-head outputs \(hook_z\)"):
        sae_releases.resolve("gemma-scope-2b-pt-att-canonical", "layer_12/width_16k/canonical")


@needs_catalogue
def test_release_import_downloads_the_catalogued_folder(studio, tmp_path: Path, loopback_hub, capsys) -> None:
    release, sae_id = "gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical"
    found = sae_releases.resolve(release, sae_id)
    npz = tmp_path / "params.npz"
    t = _write_gemma_scope(npz, seed=0)
    other = f"{found.path.rsplit('/', 1)[0]}/average_l0_1/params.npz"  # a sibling the import must not pick
    loopback_hub.add_repo(found.repo_id, {f"{found.path}/params.npz": npz.read_bytes(), other: npz.read_bytes()})
    spec = sae_io.import_sae(studio, release, sae_id=sae_id)
    assert spec.params.subfolder == found.path and spec.params.hub is True
    result = run_import(spec.params, LocalContext())
    assert result["resource"]["hook_name"] == "blocks.12.hook_resid_post"
    assert result["resource"]["config"]["import"]["metadata"]["release"] == release
    x = torch.randn(5, D_IN)
    pre = x @ t["W_enc"] + t["b_enc"]
    codes = pre.relu() * (pre > t["threshold"])
    sae = load_saelens(spec.params.out_dir)[0]
    torch.testing.assert_close(sae(x), codes @ t["W_dec"] + t["b_dec"])

    listed = _cli(capsys, "sae", "releases", "--model", "gemma-2-2b")
    assert any(r["release"] == release and r["layout"] == "gemma_scope" for r in listed)


def test_without_sae_lens_a_hint_says_how_to_enable_it(studio, monkeypatch, capsys) -> None:
    error = _cli(capsys, "sae", "import", "gemma-scope-2b-pt-res-canonical", ok=False)
    assert "a SAELens release needs its SAE id too" in error["error"]
    monkeypatch.setattr(sae_releases, "catalogue_path", lambda: None)
    for argv in (
        ("sae", "releases"),
        ("sae", "import", "gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical"),
    ):
        error = _cli(capsys, *argv, ok=False)
        assert "pip install -e .[bench] (or pip install sae-lens)" in error["error"]


def test_catalogue_parsing_of_a_written_yaml(tmp_path: Path) -> None:
    path = tmp_path / "pretrained_saes.yaml"
    path.write_text(
        "mine:\n  repo_id: me/saes\n  model: gpt2\n  conversion_func: null\n  saes:\n"
        "  - id: blocks.1\n    path: blocks.1.hook_resid_pre\n    norm_scaling_factor: 2.5\n"
        "theirs:\n  repo_id: x/y\n  model: llama\n  conversion_func: goodfire\n  saes:\n  - id: a\n    path: a.pt\n"
    )
    found = sae_releases.resolve("mine", "blocks.1", path=path)
    assert (found.repo_id, found.path, found.layout, found.norm_scaling_factor) == (
        "me/saes",
        "blocks.1.hook_resid_pre",
        "saelens",
        2.5,
    )
    assert [r.name for r in sae_releases.list_releases("LLAMA", path=path)] == ["theirs"]


@needs_catalogue
def test_release_of_single_file_saes_downloads_that_file(studio, tmp_path: Path, loopback_hub) -> None:
    release = min(r.name for r in sae_releases.list_releases() if r.conversion == "qwen_scope")
    sae_id = "layer3"
    found = sae_releases.resolve(release, sae_id)
    assert found.layout == "torch_state" and found.path.endswith(".pt")
    gen = torch.Generator().manual_seed(1)
    d_sae = 256  # at least the release's k
    state = {
        "W_enc": torch.randn(d_sae, D_IN, generator=gen),
        "b_enc": torch.randn(d_sae, generator=gen),
        "W_dec": torch.randn(D_IN, d_sae, generator=gen),
        "b_dec": torch.randn(D_IN, generator=gen),
    }
    torch.save(state, tmp_path / "s.pt")
    blob = (tmp_path / "s.pt").read_bytes()
    loopback_hub.add_repo(found.repo_id, {found.path: blob, "layer4.sae.pt": blob})
    spec = sae_io.import_sae(studio, release, sae_id=sae_id)
    result = run_import(spec.params, LocalContext())
    assert result["resource"]["architecture"] == "topk"
    assert result["resource"]["hook_name"] == "blocks.3.hook_resid_post"
    k = int(found.repo_id.rsplit("L0_", 1)[1])
    assert result["resource"]["config"]["sae"]["k"] == k


@pytest.mark.slow
@needs_catalogue
def test_cli_imports_a_release_through_a_worker(studio, tmp_path: Path, loopback_hub, capsys) -> None:
    release, sae_id = "gemma-scope-2b-pt-mlp-canonical", "layer_12/width_16k/canonical"
    found = sae_releases.resolve(release, sae_id)
    t = _write_gemma_scope(tmp_path / "params.npz", seed=2)
    loopback_hub.add_repo(found.repo_id, {f"{found.path}/params.npz": (tmp_path / "params.npz").read_bytes()})
    run = _cli(capsys, "sae", "import", release, sae_id)
    assert run["status"] == "ready" and run["hook_name"] == "blocks.12.hook_mlp_out"
    assert run["architecture"] == "jumprelu" and (run["d_in"], run["d_sae"]) == (D_IN, D_SAE)
    exported = _cli(capsys, "sae", "export", str(run["id"]), str(tmp_path / "out"))
    x = torch.randn(4, D_IN)
    pre = x @ t["W_enc"] + t["b_enc"]
    codes = pre.relu() * (pre > t["threshold"])
    sae = load_saelens(Path(exported["path"]))[0]
    torch.testing.assert_close(sae(x), codes @ t["W_dec"] + t["b_dec"])
