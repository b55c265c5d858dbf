"""The interface every SAE architecture shares: SAELens parameter names, encode / decode / loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.optim import SPARSIFY_SIGNUM, SignumRecipe

INIT_ROWS = 16384  # rows of the first batch used by data-dependent initialisation


@dataclass
class LossOutput:
    """Named loss terms of one batch (tensors), with what the trainer needs for metrics.

    Only what every step needs is computed eagerly; the means and absent terms are derived on demand (on a GPU each
    small tensor operation is a kernel launch, and the step's host time is what bounds a fast SAE).
    """

    total: Tensor
    mse: Tensor  # squared error summed over d_in, averaged over tokens
    x_hat: Tensor  # detached reconstruction [n, d_in]
    fired: Tensor  # [d_sae] int64: tokens of this batch each latent is active on
    l1_sum: Tensor  # sum of all codes of the batch (float32)
    sparsity_term: Tensor | None = None  # coefficient * (weighted L1 | L0); None for topk / batchtopk
    aux_term: Tensor | None = None  # AuxK loss (unweighted); None where it does not apply

    @property
    def rows(self) -> int:
        return int(self.x_hat.shape[0])

    @property
    def sparsity(self) -> Tensor:
        return self.total.new_zeros(()) if self.sparsity_term is None else self.sparsity_term

    @property
    def aux(self) -> Tensor:
        return self.total.new_zeros(()) if self.aux_term is None else self.aux_term

    @property
    def l0(self) -> Tensor:
        """Mean active latents per token."""
        return self.fired.sum() / max(1, self.rows)

    @property
    def l1(self) -> Tensor:
        """Mean sum of codes per token."""
        return self.l1_sum / max(1, self.rows)

    def terms(self) -> dict[str, float]:
        """The scalar terms as floats (synchronises with the device)."""
        names = ("total", "mse", "sparsity", "aux", "l0", "l1")
        return {name: float(getattr(self, name).detach()) for name in names}


class SparseAutoencoder(nn.Module):
    """Row-vector SAE: pre = (x - b_dec?) @ W_enc + b_enc; codes = act(pre); x_hat = codes @ W_dec + b_dec.

    With `cfg.d_out` it is a transcoder: the decoder writes d_out dims of another hook (W_dec [d_sae, d_out],
    b_dec [d_out]), optionally plus a linear skip x @ W_skip.T (W_skip [d_out, d_in], SAELens's orientation), and
    its training rows are [input | target].
    """

    architecture: ClassVar[str] = ""
    saved_architecture: ClassVar[str] = ""  # the SAELens name written to cfg.json
    unit_norm_decoder: ClassVar[bool] = False
    # AuxK architectures: a latent whose firing rate (an EMA over steps) is below this fraction of k / d_sae counts
    # as dead too, for AuxK and the bias lift (0: only latents silent for the trainer's dead threshold)
    rare_as_dead: ClassVar[float] = 0.0
    # how sign descent (the "auto" optimiser of most architectures) steps and averages this architecture's weights
    signum: ClassVar[SignumRecipe] = SPARSIFY_SIGNUM

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.d_in = cfg.d_in
        self.d_sae = int(cfg.d_sae or 0)
        self.d_out = cfg.d_out or cfg.d_in
        self.W_enc = nn.Parameter(torch.zeros(self.d_in, self.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(self.d_sae, self.d_out))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(self.d_out))
        self.W_skip = nn.Parameter(torch.zeros(self.d_out, self.d_in)) if cfg.skip_connection else None
        self.use_sparse_kernels = True

    # --- initialisation --------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random decoder rows (unit norm or `decoder_init_norm`), encoder = decoder transpose, zero biases."""
        norm = 1.0 if self.unit_norm_decoder else self.cfg.decoder_init_norm
        W = self._random_rows(self.d_out, generator) * norm
        self.W_dec.copy_(W)
        # a transcoder's input space is another one: its encoder starts random (the decoder's transpose elsewhere)
        self.W_enc.copy_((self._random_rows(self.d_in, generator) * norm if self.cfg.is_transcoder else W).t())
        self.b_enc.zero_()
        self.b_dec.zero_()
        if self.W_skip is not None:
            self.W_skip.zero_()

    def _random_rows(self, width: int, generator: torch.Generator | None) -> Tensor:
        W = torch.randn(self.d_sae, width, generator=generator, device=self.W_dec.device)
        unit: Tensor = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit

    @torch.no_grad()
    def initialize_from_batch(self, x: Tensor) -> None:
        """Data-dependent initialisation after b_dec is set (default: nothing)."""

    @torch.no_grad()
    def pre_activation_quantile(self, x: Tensor, rate: float) -> Tensor:
        """Per latent, the pre-activation (with b_enc = 0) that a `rate` fraction of the rows of `x` exceed."""
        x = self.split(x[:INIT_ROWS])[0].to(self.W_enc.dtype)
        x_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        pre = (x_in @ self.W_enc).float()
        rank = max(1, round(x.shape[0] * min(1.0, rate)))
        return pre.topk(rank, dim=0).values[-1]

    # --- inference -------------------------------------------------------------------------------
    def pre_activations(self, x: Tensor) -> Tensor:
        """(x - b_dec if apply_b_dec_to_input) @ W_enc + b_enc for [n, d_in] rows."""
        x_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        return torch.addmm(self.b_enc, x_in, self.W_enc)

    def activation(self, pre: Tensor) -> Tensor:
        """Dense codes from pre-activations (inference form)."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Codes [..., d_sae] for activations [..., d_in] of any leading shape."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.d_in).to(self.W_enc.dtype)
        return self.activation(self.pre_activations(flat)).reshape(*lead, self.d_sae)

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction [..., d_in] from codes [..., d_sae]."""
        return codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct x (any leading shape) through the SAE; a transcoder's output for input x."""
        return self.reconstruct(x, self.encode(x))

    def reconstruct(self, x: Tensor, codes: Tensor) -> Tensor:
        """The output for inputs x whose codes are `codes`: decode(codes), plus the skip path of a transcoder."""
        out = self.decode(codes)
        return out if self.W_skip is None else out + x.to(self.W_skip.dtype) @ self.W_skip.t()

    def output_base(self, x: Tensor) -> Tensor:
        """What the output holds before any latent adds to it: b_dec (+ the skip path) for rows x [n, d_in]."""
        return self.b_dec if self.W_skip is None else torch.addmm(self.b_dec, x, self.W_skip.t())

    def split(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(inputs, targets) of training rows: the same tensor for an SAE, [input | target] for a transcoder."""
        if not self.cfg.is_transcoder:
            return rows, rows
        return rows[..., : self.d_in], rows[..., self.d_in :]

    # --- training --------------------------------------------------------------------------------
    def loss(self, x: Tensor, sparsity_coefficient: float | None = None, dead_mask: Tensor | None = None) -> LossOutput:
        """Loss terms for a batch [n, d_in]; `dead_mask` [d_sae] enables AuxK where the architecture has it."""
        raise NotImplementedError

    @staticmethod
    def mse(x: Tensor, x_hat: Tensor) -> Tensor:
        """Squared error summed over d_in, averaged over tokens."""
        return F.mse_loss(x_hat.float(), x.float(), reduction="sum") / x.shape[0]

    def start_step(self, step: int, total_steps: int) -> None:
        """Called before each training step with the step's index and the run's length (default: nothing)."""

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Project out the gradient component parallel to each unit-norm decoder row."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Restore constraints the optimiser step may have broken (unit-norm decoder rows)."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    # --- export ----------------------------------------------------------------------------------
    @torch.no_grad()
    def fold_activation_scale(self, scale: float) -> None:
        """Make an SAE trained on `scale * x` take raw x: same codes, reconstruction in raw units."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)  # (a skip path maps scaled inputs to equally scaled outputs: W_skip stays)

    def inference_tensors(self) -> dict[str, Tensor]:
        """The tensors of the SAELens layout, by name."""
        tensors = {
            "W_enc": self.W_enc.detach(),
            "W_dec": self.W_dec.detach(),
            "b_enc": self.b_enc.detach(),
            "b_dec": self.b_dec.detach(),
        }
        if self.W_skip is not None:
            tensors["W_skip"] = self.W_skip.detach()
        return tensors

    def extra_saelens_config(self) -> dict[str, object]:
        """Architecture-specific cfg.json fields."""
        return {}
