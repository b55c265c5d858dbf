"""SAE evaluation: reconstruction statistics and CE loss with the SAE spliced into a tiny GPT-2."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.sae.architectures import StandardSAE, create_sae
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.evaluate import (
    ReconstructionStats,
    density_histogram,
    evaluate_ce_loss,
    evaluate_reconstruction,
    log10_density,
)


def test_reconstruction_stats_match_direct_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 6) * 2 + 1
    x_hat = x + torch.randn(50, 6) * 0.5
    codes = torch.relu(torch.randn(50, 10))
    codes[:, 3] = 0.0
    codes[:, 7] = 1.0
    stats = ReconstructionStats(6, 10)
    stats.update_codes(x[:20], x_hat[:20], codes[:20])
    stats.update_codes(x[20:], x_hat[20:], codes[20:])
    result = stats.result()
    sse = float(((x - x_hat) ** 2).sum())
    assert result["mse"] == pytest.approx(sse / 50)
    assert result["nmse"] == pytest.approx(sse / float((x**2).sum()))
    assert result["explained_variance"] == pytest.approx(1 - sse / float(((x - x.mean(0)) ** 2).sum()))
    assert result["l0"] == pytest.approx(float((codes > 0).sum()) / 50)
    assert result["l1"] == pytest.approx(float(codes.sum()) / 50)
    density = (codes > 0).float().mean(0)
    assert result["dense_fraction"] == pytest.approx(float((density > 0.1).float().mean()))
    torch.testing.assert_close(stats.density(), density)
    restored = ReconstructionStats(6, 10)
    restored.load_state_dict(stats.state_dict())
    assert restored.result() == result


def test_density_histogram_and_log_density() -> None:
    density = torch.tensor([0.0, 1e-3, 1e-3, 0.5, 1.0])
    hist = density_histogram(density)
    assert sum(hist["counts"]) == 5 and hist["edges"][0] == -10.0 and hist["edges"][-1] == 0.0
    assert hist["counts"][0] == 1  # the never-active latent sits in the lowest bin
    assert log10_density(density)[1].item() == pytest.approx(-3.0, abs=1e-6)


def test_evaluate_reconstruction_on_held_out_rows() -> None:
    torch.manual_seed(1)
    sae = create_sae(SAEConfig(d_in=6, d_sae=12, k=2), torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc[5] = -1e3  # latent 5 can never win: dead on this data
    data = torch.randn(300, 6)
    result = evaluate_reconstruction(sae, TensorBatchSource(data, shuffle=False), n_tokens=300, batch_size=64)
    with torch.no_grad():
        codes = sae.encode(data)
        sse = float(((sae.decode(codes) - data) ** 2).sum())
    assert result.metrics["tokens"] == 300
    assert result.metrics["mse"] == pytest.approx(sse / 300, rel=1e-5)
    assert result.metrics["l0"] == pytest.approx(2.0)
    assert result.density[5] == 0.0
    assert result.metrics["dead_fraction"] == pytest.approx(float((codes > 0).sum(0).eq(0).float().mean()))
    with pytest.raises(ValueError, match="d_in=7, but the SAE expects d_in=6"):
        evaluate_reconstruction(sae, TensorBatchSource(torch.randn(10, 7)), n_tokens=10)


def identity_sae(d: int) -> StandardSAE:
    """relu(x) - relu(-x) = x exactly: an SAE that reconstructs perfectly."""
    sae = StandardSAE(SAEConfig(d_in=d, d_sae=2 * d, architecture="standard", apply_b_dec_to_input=False))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


def hook_patch(block: torch.nn.Module, record: list[torch.Tensor]) -> Callable:
    """patch(fn): replace the block's output hidden states with fn(hidden) while the context is open."""

    @contextmanager
    def patch(fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
        def hook(module: torch.nn.Module, inputs: object, output: object) -> object:
            hidden = output[0] if isinstance(output, tuple) else output
            new = fn(hidden)
            record.append(new.detach().clone())
            return (new, *output[1:]) if isinstance(output, tuple) else new

        handle = block.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    return patch


@pytest.fixture()
def tiny_lm(tiny_lm_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()


def test_ce_loss_recovered_is_one_for_a_perfect_sae_and_zero_for_a_null_one(tiny_lm: torch.nn.Module) -> None:
    torch.manual_seed(2)
    vocab = tiny_lm.config.vocab_size
    batches = [torch.randint(0, vocab, (3, 16)) for _ in range(2)]
    record: list[torch.Tensor] = []
    patch = hook_patch(tiny_lm.transformer.h[0], record)
    d = tiny_lm.config.n_embd

    perfect = evaluate_ce_loss(tiny_lm, identity_sae(d), patch, batches)
    assert perfect["ce_loss_sae"] == pytest.approx(perfect["ce_loss_clean"], abs=1e-5)
    assert perfect["ce_loss_zero"] > perfect["ce_loss_clean"]
    assert perfect["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["kl_sae"] == pytest.approx(0.0, abs=1e-5) and perfect["kl_zero"] > 0
    assert perfect["tokens"] == 2 * 3 * 15

    null = identity_sae(d)
    with torch.no_grad():
        null.W_dec.zero_()
    result = evaluate_ce_loss(tiny_lm, null, patch, batches)
    assert result["ce_loss_sae"] == pytest.approx(result["ce_loss_zero"], abs=1e-5)
    assert result["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    assert result["kl_sae"] == pytest.approx(result["kl_zero"], rel=1e-4)


def test_ce_loss_leaves_bos_positions_alone(tiny_lm: torch.nn.Module) -> None:
    torch.manual_seed(3)
    vocab = tiny_lm.config.vocab_size
    bos = 1
    tokens = torch.randint(2, vocab, (2, 12))
    tokens[:, 0] = bos
    record: list[torch.Tensor] = []
    block = tiny_lm.transformer.h[0]
    clean: list[torch.Tensor] = []
    handle = block.register_forward_hook(lambda m, i, o: clean.append((o[0] if isinstance(o, tuple) else o).detach()))
    with torch.no_grad():
        tiny_lm(input_ids=tokens)
    handle.remove()
    null = identity_sae(tiny_lm.config.n_embd)
    with torch.no_grad():
        null.W_dec.zero_()
    evaluate_ce_loss(tiny_lm, null, hook_patch(block, record), [tokens], bos_token_id=bos)
    for spliced in record:  # the SAE run and the zero-ablation run
        torch.testing.assert_close(spliced[:, 0], clean[0][:, 0])
        assert spliced[:, 1:].abs().max() == 0.0


def test_ce_loss_through_the_model_hooks_module(tiny_lm: torch.nn.Module) -> None:
    hooks = pytest.importorskip("mistudio_tui.ml.models.hooks")
    if not hasattr(hooks, "patch_activation"):
        pytest.skip("mistudio_tui.ml.models.hooks has no patch_activation yet")
    torch.manual_seed(4)
    batches = [torch.randint(0, tiny_lm.config.vocab_size, (2, 16))]
    sae = create_sae(SAEConfig(d_in=tiny_lm.config.n_embd, d_sae=64, k=8), torch.Generator().manual_seed(0))
    via_hooks = evaluate_ce_loss(
        tiny_lm, sae, functools.partial(hooks.patch_activation, tiny_lm, "blocks.0.hook_resid_post"), batches
    )
    via_test_hook = evaluate_ce_loss(tiny_lm, sae, hook_patch(tiny_lm.transformer.h[0], []), batches)
    assert via_hooks == pytest.approx(via_test_hook, rel=1e-5)
    assert via_hooks["kl_sae"] > 0  # the random SAE really was spliced in


def test_reconstruction_stats_extra_sums_weights_and_older_states() -> None:
    stats = ReconstructionStats(2, 3, extra=2)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fired = torch.tensor([1, 0, 2])
    # (mse, sum x^2, sum of codes, loss a, loss b) given as means for mse and the losses, weighted by the rows
    stats.add(2, torch.tensor([0.5, 30.0, 6.0, 1.5, 0.25]), x.sum(0), fired, torch.tensor([2.0, 1, 1, 2, 2]))
    stats.add(2, torch.tensor([0.5, 30.0, 6.0, 0.5, 0.75]), x.sum(0), fired, torch.tensor([2.0, 1, 1, 2, 2]))
    result = stats.result()
    assert result["mse"] == pytest.approx(0.5) and result["l1"] == pytest.approx(3.0)
    assert result["l0"] == pytest.approx(6 / 4)  # derived from the firing counts
    assert stats.extra_sums().tolist() == pytest.approx([4.0, 2.0])
    restored = ReconstructionStats(2, 3, extra=2)
    restored.load_state_dict(stats.state_dict())
    assert restored.result() == result and torch.equal(restored.extra_sums(), stats.extra_sums())
    # a state written before the extra sums and with the old l0_sum still loads
    old = {k: v for k, v in stats.state_dict().items() if k != "extra"} | {"l0_sum": torch.tensor(6.0)}
    older = ReconstructionStats(2, 3, extra=2)
    older.load_state_dict(old)
    assert older.result() == result and older.extra_sums().tolist() == [0.0, 0.0]
    floats, counts = stats.packed()
    unpacked = ReconstructionStats(2, 3, extra=2)
    unpacked.unpack(floats, counts)
    assert unpacked.result() == result and unpacked.tokens == 4
