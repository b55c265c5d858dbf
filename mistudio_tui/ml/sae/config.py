"""SAE and training configuration dataclasses, validated on construction."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka")
# The one map from these names to the ones people type and read (CLI --arch, form choices, tables, run names); only
# ReLU-L1's differs. Older rows stored the shown name, so SAEConfig reads either.
ARCHITECTURE_NAMES = {name: "relu" if name == "standard" else name for name in ARCHITECTURES}
_ARCHITECTURE_IDS = {shown: name for name, shown in ARCHITECTURE_NAMES.items()}
SHOWN_ARCHITECTURES = tuple(ARCHITECTURE_NAMES.values())
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka")  # sparsity set by k, dead latents revived by AuxK
MATRYOSHKA_LEVELS = 5  # default nesting: widths d_sae / 16, / 8, / 4, / 2, d_sae
LR_DECAYS = ("constant", "cosine", "linear")
OPTIMIZERS = ("auto", "signum", "adam")
# "auto" picks signum for these, Adam for Matryoshka. ReLU-L1 and JumpReLU too: with Adam at the rule-of-thumb lr a
# short run could not be put at a chosen L0 (quick world, 1M tokens: JumpReLU's L0 was 90 for k 4 at l0_coefficient 1
# and 4 alike, its thresholds barely moved; ReLU at L0 4 had EV 0.001); under sign descent the coefficient sets the
# L0 smoothly, and at TopK's L0 ReLU's EV rose to 0.735 and JumpReLU's to 0.78 (benchmarks/RESULTS.md, issue 16).
SIGNUM_ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
B_DEC_INITS = ("geometric_median", "mean", "zeros")
TRAIN_DTYPES = ("fp32", "bf16")
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16"}


def architecture_id(name: str) -> str:
    """The internal name of architecture `name`, given by either name (an unknown one as it is, for a check)."""
    return _ARCHITECTURE_IDS.get(name, name)


def shown_architecture(name: str) -> str:
    """The name people read for architecture `name`, given by either name (an unknown one as it is)."""
    return ARCHITECTURE_NAMES.get(architecture_id(name), name)


def _from_dict(cls: type[_D], data: dict[str, Any], what: str) -> _D:
    """Build dataclass `cls` from `data`, naming unknown keys in the error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")
    return cls(**data)


def _require_finite(config: Any) -> None:
    """NaN or infinity passes the range checks below (every comparison with NaN is false; inf > 0), so refuse first."""
    for item in dataclasses.fields(config):
        values = getattr(config, item.name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{item.name} must be a finite number, got {value}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class SAEConfig:
    """What an SAE is: architecture, sizes and the loss hyper-parameters tied to the architecture."""

    d_in: int
    architecture: str = "topk"
    d_sae: int | None = None  # None: d_in * expansion_factor
    expansion_factor: int = 8
    k: int = 32  # active latents per token: topk, batchtopk (batch mean), jumprelu (the L0 its b_enc starts at)
    l1_coefficient: float = 1.0  # standard: weight of sum_i f_i * ||W_dec_i|| (inputs at mean norm sqrt(d_in))
    l0_coefficient: float = 1.0  # jumprelu: weight of the (straight-through) L0 penalty
    jumprelu_bandwidth: float = 0.05  # width of the rectangle kernel of the threshold's pseudo-gradient
    jumprelu_init_threshold: float = 0.1
    # jumprelu: weight of the loss pulling pre-activations up to the threshold. Without it no gradient reaches a dead
    # latent: 12-16% of the quick world's latents ended dead, 0% with it (benchmarks/RESULTS.md, issue 16)
    jumprelu_pre_act_coefficient: float = 1e-3
    aux_k: int | None = None  # topk / batchtopk: dead latents used by AuxK; None: d_in // 2
    aux_k_coefficient: float = 1.0 / 32.0
    dead_tokens_threshold: int = 10_000_000  # scaled down by the trainer for short runs
    apply_b_dec_to_input: bool = True
    normalize_activations: bool = True  # train on inputs scaled to mean norm sqrt(d_in); folded on save
    decoder_init_norm: float = 0.1  # standard / jumprelu decoder row norm at init (topk rows are unit norm)
    # matryoshka: the nested prefix widths that each reconstruct the input (increasing, the last d_sae; SAELens's
    # `matryoshka_widths`); None: doubling up to d_sae
    matryoshka_widths: list[int] | None = None
    # transcoders: the decoder writes d_out dims of another hook; training rows are [input | target] (d_in + d_out)
    d_out: int | None = None  # None: an SAE (the decoder reconstructs the input)
    skip_connection: bool = False  # transcoders: also a learned linear skip W_skip [d_out, d_in] from the input

    def __post_init__(self) -> None:
        _require_finite(self)
        self.architecture = architecture_id(self.architecture)
        _require(
            self.architecture in ARCHITECTURES,
            f"architecture {self.architecture!r} is not supported; expected one of {', '.join(SHOWN_ARCHITECTURES)}",
        )
        _require(isinstance(self.d_in, int) and self.d_in > 0, f"d_in must be a positive integer, got {self.d_in!r}")
        if self.d_sae is None:
            _require(self.expansion_factor > 0, f"expansion_factor must be positive, got {self.expansion_factor}")
            self.d_sae = self.d_in * self.expansion_factor
        _require(int(self.d_sae) > 0, f"d_sae must be a positive integer, got {self.d_sae!r}")
        self.d_sae = int(self.d_sae)
        if self.architecture in K_ARCHITECTURES:
            _require(0 < self.k <= self.d_sae, f"k must be between 1 and d_sae={self.d_sae}, got {self.k}")
        if self.architecture == "matryoshka":
            self.matryoshka_widths = resolve_matryoshka_widths(self.d_sae, self.matryoshka_widths)
        else:
            _require(self.matryoshka_widths is None, "matryoshka_widths applies to the matryoshka architecture only")
        for name in (
            "l1_coefficient",
            "l0_coefficient",
            "aux_k_coefficient",
            "decoder_init_norm",
            "jumprelu_pre_act_coefficient",
        ):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("jumprelu_bandwidth", "jumprelu_init_threshold"):
            _require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        if self.d_out is not None:
            _require(
                isinstance(self.d_out, int) and self.d_out > 0, f"d_out must be a positive integer, got {self.d_out!r}"
            )
            _require(
                not self.apply_b_dec_to_input,
                "a transcoder's b_dec lives in its output space: apply_b_dec_to_input must be false",
            )
        _require(not self.skip_connection or self.d_out is not None, "skip_connection needs a transcoder (d_out)")
        _require(self.aux_k is None or self.aux_k > 0, f"aux_k must be positive, got {self.aux_k}")
        _require(self.dead_tokens_threshold > 0, f"dead_tokens_threshold must be > 0, got {self.dead_tokens_threshold}")

    @property
    def is_transcoder(self) -> bool:
        """Whether the decoder writes another hook's activations (d_out) instead of reconstructing the input."""
        return self.d_out is not None

    @property
    def row_width(self) -> int:
        """Width of a training row: the input, followed by the target for transcoders."""
        return self.d_in + (self.d_out or 0)

    @property
    def effective_aux_k(self) -> int:
        """How many dead latents AuxK may use per token."""
        return self.aux_k if self.aux_k is not None else max(1, (self.d_out or self.d_in) // 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        return _from_dict(cls, data, "SAE config")


@dataclass
class TrainConfig:
    """How to train: token budget, optimiser schedule, initialisation, device and bookkeeping cadence."""

    total_tokens: int = 100_000_000
    batch_size: int = 4096
    # auto: sign descent with schedule-free averaging (see ml/sae/optim.py), Adam for Matryoshka (SIGNUM_ARCHITECTURES)
    optimizer: str = "auto"
    lr: float | None = None  # None: default_lr(d_sae, optimizer)
    lr_warmup_steps: int | None = None  # None: 1000 for Adam, 0 for signum; capped at a tenth of the run
    lr_decay: str | None = None  # None: linear for Adam, constant for signum (its averaged weights need no decay)
    lr_decay_start: float = 0.8  # fraction of the run after which the lr decays
    final_lr_fraction: float = 0.1  # lr at the last step, as a fraction of the peak
    sparsity_warmup_steps: int | None = None  # None: 5% of the run (l1 / l0 coefficient ramps up from 0)
    # Off by default: clipping the whole gradient to norm 1 left twice the dead latents on real activations
    # (benchmarks/sae_quality.py, TopK: 0.65 vs 0.29), probably by shrinking their AuxK gradients too.
    grad_clip: float | None = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    b_dec_init: str = "mean"  # the geometric median is available; the mean did as well or better in sae_quality.py
    init_tokens: int = 65_536  # tokens drawn first to estimate the normaliser and initialise biases
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"  # bf16: autocast with fp32 master weights
    # topk / batchtopk: decode and back-propagate through the selected latents only (None: on CPU, not on CUDA)
    sparse_kernels: bool | None = None
    metrics_every: int = 50
    density_hist_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # 0 keeps all
    eval_tokens: int = 65_536
    metadata: dict[str, Any] = field(default_factory=dict)  # written into cfg.json (hook_name, model_name, ...)

    def __post_init__(self) -> None:
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        _require_finite(self)
        for name in (
            "total_tokens",
            "batch_size",
            "init_tokens",
            "metrics_every",
            "density_hist_every",
            "checkpoint_every",
        ):
            _require(getattr(self, name) > 0, f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("eval_tokens", "keep_checkpoints"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(
            self.lr_warmup_steps is None or self.lr_warmup_steps >= 0,
            f"lr_warmup_steps must be >= 0 (or empty for automatic), got {self.lr_warmup_steps}",
        )
        _require(
            self.lr is None or (math.isfinite(self.lr) and self.lr > 0),
            f"lr must be positive (or empty for automatic), got {self.lr}",
        )
        _require(
            self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} unknown; expected {', '.join(OPTIMIZERS)}"
        )
        _require(
            self.lr_decay is None or self.lr_decay in LR_DECAYS,
            f"lr_decay {self.lr_decay!r} unknown; expected {', '.join(LR_DECAYS)}",
        )
        _require(0.0 <= self.lr_decay_start <= 1.0, f"lr_decay_start must be in [0, 1], got {self.lr_decay_start}")
        _require(
            0.0 <= self.final_lr_fraction <= 1.0, f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}"
        )
        _require(
            self.sparsity_warmup_steps is None or self.sparsity_warmup_steps >= 0,
            f"sparsity_warmup_steps must be >= 0, got {self.sparsity_warmup_steps}",
        )
        _require(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or empty, got {self.grad_clip}")
        _require(
            self.b_dec_init in B_DEC_INITS, f"b_dec_init {self.b_dec_init!r} unknown; expected {', '.join(B_DEC_INITS)}"
        )
        self.dtype = _DTYPE_ALIASES.get(str(self.dtype).removeprefix("torch."), self.dtype)
        _require(self.dtype in TRAIN_DTYPES, f"dtype {self.dtype!r} unknown; expected {', '.join(TRAIN_DTYPES)}")

    @property
    def total_steps(self) -> int:
        """Optimiser steps needed to see `total_tokens`."""
        return math.ceil(self.total_tokens / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        return _from_dict(cls, data, "training config")


def resolve_matryoshka_widths(d_sae: int, widths: list[int] | None = None) -> list[int]:
    """The nested prefix widths of a Matryoshka SAE: `widths` checked (d_sae appended when it is not the last),
    or by default doubling up to d_sae."""
    if widths is None:
        return sorted({max(1, d_sae >> level) for level in range(MATRYOSHKA_LEVELS)})
    _require(
        isinstance(widths, (list, tuple)) and all(isinstance(w, int) and not isinstance(w, bool) for w in widths),
        f"matryoshka_widths must be a list of integers, got {widths!r}",
    )
    widths = [int(w) for w in widths]
    if not widths or widths[-1] != d_sae:
        widths.append(d_sae)
    _require(
        widths[0] > 0 and all(a < b for a, b in itertools.pairwise(widths)),
        f"matryoshka_widths must increase strictly from above 0 up to d_sae={d_sae}, got {widths}",
    )
    return widths


def resolve_optimizer(name: str, architecture: str) -> str:
    """The optimiser `name` stands for: "auto" is signum for SIGNUM_ARCHITECTURES and Adam otherwise."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} unknown; expected one of {', '.join(OPTIMIZERS)}")
    if name != "auto":
        return name
    return "signum" if architecture in SIGNUM_ARCHITECTURES else "adam"


# Sign descent never shrinks its own step, so a long run at a short run's lr ends noisier: on the quick world at 8M
# tokens (1,953 steps) TopK's EV was 0.828 at its 1M-token lr and 0.855 at half of it, BatchTopK's 0.757 and 0.816,
# MCC unchanged (benchmarks/RESULTS.md, issue 16). Beyond this many steps the signum lr falls as 1/sqrt(steps).
SIGNUM_REFERENCE_STEPS = 500


def default_lr(d_sae: int, optimizer: str = "adam", signum_lr: float = 5e-3, total_steps: int = 0) -> float:
    """The automatic learning rate: 2e-4 (Adam) or `signum_lr` (the architecture's optim.SignumRecipe) divided by
    sqrt(d_sae / 2**14), the rule of Gao et al. (a sign step moves every weight by the whole lr, so its lr is the
    larger); the signum lr is further scaled by sqrt(SIGNUM_REFERENCE_STEPS / total_steps) for longer runs."""
    if optimizer != "signum":
        return 2e-4 / math.sqrt(d_sae / 2**14)
    budget = math.sqrt(min(1.0, SIGNUM_REFERENCE_STEPS / total_steps)) if total_steps > 0 else 1.0
    return signum_lr / math.sqrt(d_sae / 2**14) * budget
