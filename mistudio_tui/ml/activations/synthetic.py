"""Synthetic activation sets with known true features (sae_lens.synthetic), to check a training recipe cheaply."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.ml.sae.ground_truth_file import GROUND_TRUTH_FILE, GROUND_TRUTH_KEY
from mistudio_tui.reporting import JobContext, LocalContext

SYNTH_HOOK = "synthetic"
SAE_LENS_HINT = (
    "mistudio synth needs the sae-lens package: pip install -e '.[bench]' "
    "(or pip install sae-lens torch==<your torch version>, so pip keeps your torch)"
)
ZIPF_MIN_OVER_MAX = 0.01 / 0.3  # the ratio of sae_lens's default Zipfian min and max firing probabilities
L0_SAMPLE_TOKENS = 200_000  # at most this many generated rows are counted for the true L0
STAGING_DIR = ".synth-staging"


@dataclass(frozen=True)
class SynthOptions:
    """The world to generate: true features, their firing statistics and how many activation rows."""

    features: int = 4096
    d_in: int = 256
    tokens: int = 1_000_000
    target_l0: float = 32.0  # the expected number of true features firing per row (before hierarchy)
    seed: int = 0
    hierarchy_roots: int = 0  # trees of parent → child features (children fire only with their parent); 0 = none
    correlation: float = 0.0  # scale of a low-rank correlation between firings; 0 = independent
    bias: float = 1.0  # norm of a constant offset added to every row (sae_lens's default)
    shard_tokens: int = 65_536

    def check(self) -> None:
        """Raise ValueError naming the first option out of range."""
        for name, low in (("features", 2), ("d_in", 2), ("tokens", 1), ("shard_tokens", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if not self.target_l0 > 0:  # also refuses NaN
            raise ValueError(f"--l0 must be positive, got {self.target_l0}")
        if self.zipf_max_prob() > 1.0:
            most = self.target_l0 / self.zipf_max_prob()
            raise ValueError(f"--l0 {self.target_l0:g} is too high for {self.features} features (at most {most:.3g})")
        if self.hierarchy_roots < 0 or self.hierarchy_roots * 2 > self.features:
            raise ValueError(f"--hierarchy must be between 0 and features/2, got {self.hierarchy_roots}")
        if not 0 <= self.correlation <= 1:
            raise ValueError(f"--correlation must be between 0 and 1, got {self.correlation}")
        if self.bias < 0:
            raise ValueError(f"--bias must be non-negative, got {self.bias}")

    def zipf_max_prob(self) -> float:
        """The top firing probability that makes sae_lens's Zipfian probabilities sum to `target_l0`.

        Its probabilities are min + (max - min) * (1/rank - 1/n) / (1 - 1/n); with min = ratio * max the sum is
        max * (n * ratio + (1 - ratio) * shape), linear in max.
        """
        n, ratio = self.features, ZIPF_MIN_OVER_MAX
        harmonic = sum(1.0 / rank for rank in range(1, n + 1))
        shape = (harmonic - 1.0) / (1.0 - 1.0 / n)  # the sum of (1/rank - 1/n) / (1 - 1/n) over ranks
        return self.target_l0 / (n * ratio + (1.0 - ratio) * shape)


def sae_lens_available() -> bool:
    """Whether the optional sae-lens package can be imported (without importing it)."""
    return importlib.util.find_spec("sae_lens") is not None


def build_model(options: SynthOptions) -> Any:
    """The sae_lens SyntheticModel for `options` (CPU)."""
    try:
        from sae_lens.synthetic import (
            HierarchyConfig,
            LowRankCorrelationConfig,
            SyntheticModel,
            SyntheticModelConfig,
            ZipfianFiringProbabilityConfig,
        )
    except ImportError as exc:
        raise ImportError(f"{SAE_LENS_HINT} ({exc})") from None
    max_prob = options.zipf_max_prob()
    config = SyntheticModelConfig(
        num_features=options.features,
        hidden_dim=options.d_in,
        firing_probability=ZipfianFiringProbabilityConfig(max_prob=max_prob, min_prob=max_prob * ZIPF_MIN_OVER_MAX),
        hierarchy=HierarchyConfig(
            total_root_nodes=options.hierarchy_roots,
            branching_factor=(2, 4),
            max_depth=2,
            compensate_probabilities=True,
        )
        if options.hierarchy_roots
        else None,
        correlation=LowRankCorrelationConfig(
            rank=min(32, options.features), correlation_scale=options.correlation, seed=options.seed
        )
        if options.correlation
        else None,
        bias=float(options.bias) if options.bias else False,
        seed=options.seed,
    )
    return SyntheticModel(config, device="cpu")


def build_synthetic_set(options: SynthOptions, out_dir: Path | str, ctx: JobContext | None = None) -> dict[str, Any]:
    """Generate `options.tokens` rows into a miStudio activation set in `out_dir`, true features beside them."""
    from safetensors.torch import save_file

    from mistudio_tui.ml.activations.extract import write_manifest
    from mistudio_tui.ml.activations.importing import import_activations

    ctx = ctx if ctx is not None else LocalContext()
    options.check()
    out_dir = Path(out_dir)
    staging = out_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ctx.progress(0, options.tokens, text=f"building a world of {options.features:,} features in {options.d_in} dims")
    model = build_model(options)
    ctx.started("cpu")
    written = fired = counted = 0
    try:
        while written < options.tokens:
            ctx.check_cancelled()
            rows = min(options.shard_tokens, options.tokens - written)
            hidden, firing = model.sample_with_features(rows)
            if counted < L0_SAMPLE_TOKENS:
                fired += int((firing != 0).sum())
                counted += rows
            part = staging / f"part-{written // options.shard_tokens:06d}.safetensors"
            save_file({SYNTH_HOOK: hidden.float().contiguous()}, str(part))
            written += rows
            ctx.progress(written, options.tokens, text=f"{written:,} of {options.tokens:,} rows", unit="tokens")
        # the shards are hard-linked into the set (same folder tree), so nothing is copied twice
        manifest = import_activations(staging, out_dir, key=SYNTH_HOOK, hook_name=SYNTH_HOOK, link="hardlink")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    true_features = model.feature_dict.feature_vectors.detach().float().cpu().contiguous()
    save_file({GROUND_TRUTH_KEY: true_features}, str(out_dir / GROUND_TRUTH_FILE))
    true_l0 = fired / counted
    manifest.update(
        source="synthetic",
        imported_from=None,
        synthetic={
            **asdict(options),
            "true_l0": true_l0,
            "ground_truth": GROUND_TRUTH_FILE,
            "sae_lens_config": model.cfg.to_dict(),
        },
    )
    write_manifest(out_dir, manifest)
    ctx.log(f"{written:,} rows of {options.d_in} dims; true L0 {true_l0:.2f}; true features in {GROUND_TRUTH_FILE}")
    return manifest
