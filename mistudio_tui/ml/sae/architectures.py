"""The SAE architectures (ReLU-L1, TopK, BatchTopK, JumpReLU, Matryoshka BatchTopK) and the `create_sae` factory."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mistudio_tui.ml.sae.base import LossOutput, SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.dense_ops import auxk_codes, batch_topk_codes, column_counts, fired_counts, topk_codes
from mistudio_tui.ml.sae.optim import LATE_AVERAGE_SIGNUM, SPARSIFY_SIGNUM
from mistudio_tui.ml.sae.sparse_ops import SparseCodes, sparse_decode, sparse_encode

THRESHOLD_EMA = 0.99  # BatchTopK: weight of the running threshold against each batch's cut


class StandardSAE(SparseAutoencoder):
    """ReLU codes; L1 penalty weighted by decoder row norms (so shrinking the decoder cannot cheat it)."""

    architecture = "standard"
    saved_architecture = "standard"

    def activation(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def loss(self, x: Tensor, sparsity_coefficient: float | None = None, dead_mask: Tensor | None = None) -> LossOutput:
        coefficient = self.cfg.l1_coefficient if sparsity_coefficient is None else sparsity_coefficient
        x, target = self.split(x)
        codes = self.pre_activations(x).relu()  # in the autocast dtype, like the matmuls around it
        x_hat = codes @ self.W_dec + self.output_base(x)
        mse = self.mse(target, x_hat)
        per_latent = codes.sum(0, dtype=torch.float32)  # L1 of each latent over the batch
        # torch.dot is outside autocast's lists: the weighted sum stays in float32
        sparsity = torch.dot(per_latent, self.W_dec.norm(dim=1).float()) * (coefficient / x.shape[0])
        return LossOutput(
            total=mse + sparsity,
            mse=mse,
            x_hat=x_hat.detach(),
            fired=column_counts(codes.detach()),  # ReLU codes: active where above 0
            l1_sum=per_latent.detach().sum(),
            sparsity_term=sparsity,
        )


class _JumpReLUWithL0(torch.autograd.Function):
    """(codes = pre * H(pre - threshold), mean L0, tokens each latent fires on) with straight-through threshold
    gradients for the first two."""

    # The threshold's pseudo-gradient uses a rectangle kernel of width `bandwidth` around it (Rajamanoharan et
    # al.); pre gets only the gradient of the codes through the gate; the firing counts have no gradient.

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> tuple[Tensor, Tensor, Tensor]:
        gate = pre > threshold
        fired = column_counts(gate)
        ctx.save_for_backward(pre, threshold, gate)
        ctx.bandwidth = bandwidth
        ctx.mark_non_differentiable(fired)
        return torch.where(gate, pre, 0.0), fired.sum() / pre.shape[0], fired

    @staticmethod
    def backward(ctx: Any, grad_codes: Tensor | None, grad_l0: Tensor | None, _: Any) -> tuple[Tensor | None, ...]:
        pre, threshold, gate = ctx.saved_tensors
        bw = ctx.bandwidth
        near = (pre - threshold).abs_() < bw / 2
        weight = torch.zeros_like(pre) if grad_codes is None else grad_codes * threshold
        if grad_l0 is not None:
            weight = weight + grad_l0 / pre.shape[0]
        grad_threshold = -torch.where(near, weight, 0.0).sum(0) / bw
        grad_pre = None if grad_codes is None else torch.where(gate, grad_codes, 0.0)
        return grad_pre, grad_threshold, None


class _ThresholdFP32:
    """Mixin: keep the `threshold` tensor in float32 whatever dtype the module is cast to."""

    threshold: Tensor

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        result = super()._apply(fn, recurse)  # type: ignore[misc]
        if self.threshold.dtype != torch.float32:
            self.threshold.data = self.threshold.data.float()
        return result

    def _jump(self, pre: Tensor) -> Tensor:
        return pre * (pre.float() > self.threshold)


class JumpReLUSAE(_ThresholdFP32, SparseAutoencoder):
    """JumpReLU codes with a learned per-latent threshold (fp32) and an L0 penalty."""

    architecture = "jumprelu"
    saved_architecture = "jumprelu"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.full((self.d_sae,), float(cfg.jumprelu_init_threshold)))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        self.threshold.fill_(self.cfg.jumprelu_init_threshold)

    @torch.no_grad()
    def initialize_from_batch(self, x: Tensor) -> None:
        """Set b_enc so each latent starts above its threshold on about k / d_sae of the tokens."""
        self.b_enc.copy_(self.threshold - self.pre_activation_quantile(x, self.cfg.k / self.d_sae))

    def activation(self, pre: Tensor) -> Tensor:
        return self._jump(pre)

    def loss(self, x: Tensor, sparsity_coefficient: float | None = None, dead_mask: Tensor | None = None) -> LossOutput:
        coefficient = self.cfg.l0_coefficient if sparsity_coefficient is None else sparsity_coefficient
        x, target = self.split(x)
        pre = self.pre_activations(x)
        bw = self.cfg.jumprelu_bandwidth
        codes, l0, fired = _JumpReLUWithL0.apply(pre, self.threshold, bw)  # type: ignore[no-untyped-call]  # torch: apply is untyped
        x_hat = codes @ self.W_dec + self.output_base(x)
        mse = self.mse(target, x_hat)
        sparsity = coefficient * l0
        if self.cfg.jumprelu_pre_act_coefficient > 0:
            # Anthropic's pre-activation loss (Jan 2025; SAELens's pre_act_loss_coefficient): a latent below its
            # threshold on every token gets no other gradient, so nothing could bring a dead latent back.
            below = (self.threshold - pre.float()).relu().sum(0)
            pre_act = torch.dot(below, self.W_dec.norm(dim=1).float()) / x.shape[0]
            sparsity = sparsity + self.cfg.jumprelu_pre_act_coefficient * pre_act
        return LossOutput(
            total=mse + sparsity,
            mse=mse,
            x_hat=x_hat.detach(),
            fired=fired,
            l1_sum=codes.detach().sum(dtype=torch.float32),
            sparsity_term=sparsity,
        )

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        self.threshold.clamp_(min=0.0)

    def inference_tensors(self) -> dict[str, Tensor]:
        return {**super().inference_tensors(), "threshold": self.threshold.detach()}


class TopKSAE(SparseAutoencoder):
    """Keep the k largest pre-activations per token (then ReLU); unit-norm decoder rows; AuxK on dead latents."""

    architecture = "topk"
    saved_architecture = "topk"
    unit_norm_decoder = True
    batch_topk = False
    # Latents that fire once in ~10k tokens are never silent long enough to count as dead, yet too rare to learn
    # (their encoder and decoder drift apart, |cos| 0.11; 188 of 480 under BatchTopK on the quick world). Counted as
    # dead, AuxK and the bias lift retrain them. BatchTopK: quick MCC 0.835 -> 0.870 on top of its TopK phase; TopK,
    # seed 0: MCC quick 0.864 -> 0.896, base 0.777 -> 0.822 (dead 3.8% -> 1.6%), dense4x 0.814 -> 0.841, absorb
    # 0.633 -> 0.698, EV up on all four (benchmarks/RESULTS.md, issue 16).
    rare_as_dead = 0.25
    # Its average leans on the end of the run; dead latents are lifted to its end, each only as far as makes it fire
    # on a few rows (trainer.dead_bias_floor). Lifted to the live latents' 99th percentile instead, they fired
    # spuriously in the saved weights, so that lift stopped at 90% of the run (absorb world, three seeds: dead 26% ->
    # 2.4%, MCC 0.731 -> 0.797, EV 0.900 -> 0.909 with the per-latent lift to the end; benchmarks/RESULTS.md).
    signum = LATE_AVERAGE_SIGNUM

    @torch.no_grad()
    def initialize_from_batch(self, x: Tensor) -> None:
        """Set b_enc so every latent starts positive on about k / d_sae of the tokens: all take part in the TopK."""
        self.b_enc.copy_(-self.pre_activation_quantile(x, self.cfg.k / self.d_sae))

    def activation(self, pre: Tensor) -> Tensor:
        values, index = pre.topk(self.cfg.k, dim=-1, sorted=False)
        # without autograd the pre-activations' own memory takes the codes (a fresh [n, d_sae] costs page faults)
        codes = torch.zeros_like(pre) if pre.requires_grad else pre.zero_()
        return codes.scatter_(-1, index, values.relu())

    def loss(self, x: Tensor, sparsity_coefficient: float | None = None, dead_mask: Tensor | None = None) -> LossOutput:
        x, target = self.split(x.to(self.W_enc.dtype))
        base = self.output_base(x)
        aux_k = self.cfg.effective_aux_k
        if self.use_sparse_kernels:
            b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
            main, aux = sparse_encode(x, self.W_enc, self.b_enc, b_dec, self.cfg.k, self.batch_topk, dead_mask, aux_k)
            x_hat, inner = self._reconstruct(target, main, base)
            aux_recon = sparse_decode(aux, self.W_dec) if aux is not None else None
            values, fired = main.values, main.fired_counts()
        else:  # dense and free of host synchronisation (the GPU path)
            pre = self.pre_activations(x)
            if self.batch_topk:
                codes, values, fired = batch_topk_codes(pre, self.cfg.k)
            else:
                codes, values, index = topk_codes(pre, self.cfg.k)
                fired = fired_counts(index, values, self.d_sae)
            x_hat, inner = self._reconstruct(target, codes, base)
            aux_recon = auxk_codes(pre, dead_mask, aux_k) @ self.W_dec if dead_mask is not None else None
        if self.training and self.batch_topk:
            self._update_threshold(values.detach())
        mse = self.mse(target, x_hat)
        total, aux_loss = mse if inner is None else mse + inner, None
        if aux_recon is not None and dead_mask is not None:
            scale = (dead_mask.sum() / aux_k).clamp(max=1.0)
            aux_loss = scale * self.mse((target - x_hat).detach(), aux_recon)
            total = total + self.cfg.aux_k_coefficient * aux_loss
        return LossOutput(
            total=total,
            mse=mse,
            x_hat=x_hat.detach(),
            fired=fired,
            l1_sum=values.detach().sum(dtype=torch.float32),
            aux_term=aux_loss,
        )

    def _reconstruct(self, target: Tensor, codes: Tensor | SparseCodes, base: Tensor) -> tuple[Tensor, Tensor | None]:
        """(x_hat: `base` (b_dec, + skip) plus the kept codes decoded, dense or sparse; any further reconstruction
        loss against `target`, None here)."""
        if isinstance(codes, SparseCodes):
            return sparse_decode(codes, self.W_dec) + base, None
        return codes @ self.W_dec + base, None

    def _update_threshold(self, values: Tensor) -> None:
        """Subclasses that learn an inference threshold update it here."""

    def extra_saelens_config(self) -> dict[str, object]:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}


class BatchTopKSAE(_ThresholdFP32, TopKSAE):
    """TopK over the whole batch (k * batch codes), after a first phase of per-row TopK; learns a global threshold
    and runs as JumpReLU at inference."""

    architecture = "batchtopk"
    saved_architecture = "jumprelu"
    batch_topk = True
    threshold_updates: Tensor
    # Fraction of the run's steps that select per-row TopK before the batch-wide selection takes over. From the
    # start, batch-wide selection never learned the frequent low-magnitude true features of the ground-truth worlds:
    # their codes fall below the batch's cut, their latents starve (benchmarks/RESULTS.md, issue 16; quick world
    # MCC 0.725 -> 0.835 with the first half as TopK). Every row taking k latents early, as TopK does, trains them.
    topk_phase = 0.5
    # TopK's recipe (late-leaning average, per-latent lift): with the lift to the live biases' 99th percentile it left
    # 4-9% of BatchTopK's latents dead on the base world; with the per-latent lift, quick world seed 0 EV 0.800 ->
    # 0.813, base MCC 0.767 -> 0.81, EV 0.745 -> 0.787 (benchmarks/RESULTS.md, issue 16).

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(self.d_sae))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64))

    def activation(self, pre: Tensor) -> Tensor:
        return self._jump(pre)

    def start_step(self, step: int, total_steps: int) -> None:
        # the last step is always batch-wide, so even a one-step run learns its inference threshold
        self.batch_topk = step >= int(self.topk_phase * total_steps)

    @torch.no_grad()
    def _update_threshold(self, values: Tensor) -> None:
        """EMA of the smallest positive kept value (on the device: no host synchronisation); the first update takes
        it as is, a batch without positive values changes nothing."""
        cut = values.masked_fill(values <= 0, torch.inf).min().float()
        seen = cut.isfinite()
        weight = torch.where(self.threshold_updates > 0, 1.0 - THRESHOLD_EMA, 1.0) * seen
        self.threshold.lerp_(torch.where(seen, cut, self.threshold), weight)
        self.threshold_updates.add_(seen)

    @torch.no_grad()
    def calibrate_threshold(self, batches: list[Tensor]) -> None:
        """Set the inference threshold to the mean batch-wide cut of the current weights over `batches` (rows as the
        SAE takes them); batches without a positive kept value are skipped.

        The running threshold follows the weights the optimiser steps, while the schedule-free average is what gets
        saved; and after the TopK phase it still holds the first, higher cuts: on the quick world it gave L0 3.3
        (EV 0.788) where k is 4, calibrated L0 4.2 (EV 0.799).
        """
        cuts = []
        for x in batches:
            values = batch_topk_codes(self.pre_activations(self.split(x)[0].to(self.W_enc.dtype)), self.cfg.k)[1]
            positive = values[values > 0]
            if positive.numel():
                cuts.append(positive.min().float())
        if cuts:
            self.threshold.fill_(float(torch.stack(cuts).mean()))

    def inference_tensors(self) -> dict[str, Tensor]:
        return {**super().inference_tensors(), "threshold": self.threshold.detach()}

    def extra_saelens_config(self) -> dict[str, object]:
        return {}


class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK whose nested prefixes of latents (`matryoshka_widths`) each reconstruct the input (Bussmann et al.
    2025); runs as JumpReLU at inference, like BatchTopK.

    The loss adds every prefix's squared error to the full one (SAELens sums them too): the first latents must
    reconstruct on their own, so general features stay whole instead of being absorbed by more specific ones.
    """

    architecture = "matryoshka"
    # not measured against ground truth: batch-wide from the start, only silent latents dead, sparsify's average
    topk_phase = 0.0
    rare_as_dead = 0.0
    signum = SPARSIFY_SIGNUM

    def _reconstruct(self, target: Tensor, codes: Tensor | SparseCodes, base: Tensor) -> tuple[Tensor, Tensor | None]:
        """The full x_hat and the sum of the inner prefixes' squared errors; each prefix adds its group's decode to
        the one before, so all of them together cost one full decode."""
        widths = self.cfg.matryoshka_widths or [self.d_sae]
        x_hat = base
        inner = []
        for start, end in zip([0, *widths[:-1]], widths, strict=True):
            if isinstance(codes, SparseCodes):
                x_hat = x_hat + sparse_decode(codes.columns(start, end), self.W_dec)
            else:
                x_hat = x_hat + codes[:, start:end] @ self.W_dec[start:end]
            if end < self.d_sae:
                inner.append(self.mse(target, x_hat))
        return x_hat, torch.stack(inner).sum() if inner else None

    def extra_saelens_config(self) -> dict[str, object]:
        return {}


ARCHITECTURE_CLASSES: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls for cls in (StandardSAE, TopKSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE)
}


def create_sae(cfg: SAEConfig, generator: torch.Generator | None = None) -> SparseAutoencoder:
    """A freshly initialised SAE of `cfg.architecture`."""
    sae = ARCHITECTURE_CLASSES[cfg.architecture](cfg)
    sae.reset_parameters(generator)
    return sae


def sae_from_tensors(cfg: SAEConfig, tensors: dict[str, Tensor]) -> SparseAutoencoder:
    """An SAE of `cfg.architecture` holding exactly `tensors` (W_enc, W_dec, b_enc, b_dec[, threshold])."""
    sae = ARCHITECTURE_CLASSES[cfg.architecture](cfg)
    state = {name: tensors[name].to(torch.float32) for name in sae.state_dict() if name in tensors}
    sae.load_state_dict(state, strict=False)
    missing = sorted(set(sae.inference_tensors()) - set(tensors))
    if missing:
        raise ValueError(f"{cfg.architecture} SAE needs tensors {', '.join(missing)}")
    return sae
