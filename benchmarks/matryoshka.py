"""Matryoshka BatchTopK vs BatchTopK on a hierarchical ground-truth world (feature absorption).

    python benchmarks/matryoshka.py [--seeds 3] [--tokens 1M] [--batch-size 256] [--d-in 64] [--parents 16]
        [--children 4] [--parent-rate 0.125] [--device cpu] [--quick]

The world: `--parents` parent features fire independently (probability `--parent-rate`); each active parent turns on
exactly one of its `--children` children (mutually exclusive), so a parent never fires alone. Every feature has a
random unit-norm direction in R^d_in and a magnitude drawn from U(0.5, 1.5); a token is the sum of its active
features' magnitude × direction, plus a little noise. This is the setting where a sparse dictionary is tempted to
absorb the parent into its children (each child latent learns parent + child, and no latent is the parent alone).

Both SAEs get the same width (the number of true features), the same k (the world's mean L0), the same token budget
and seed and miStudio's default recipe otherwise; Matryoshka uses its default nested widths (doubling up to d_sae).
Scores, on the saved (inference-form) decoders:
- MCC: decoder rows matched one-to-one to the true directions by the Hungarian algorithm on |cosine|
  (scipy.optimize.linear_sum_assignment), the mean matched |cosine| over the true features;
- parents recovered (the absorption indicator): the fraction of parent directions whose best decoder row has cosine
  >= 0.8. A parent absorbed into its children has no row of its own: its best match is a child row (parent + child,
  cosine ~0.71). A Matryoshka parent row carries the mean of its children as well (its inner level must reconstruct
  them without them), which caps its cosine at 1 / sqrt(1 + 1 / children) = 0.89 for 4 children: 0.9 would be right
  at that cap, hence 0.8; the mean best cosine of the parents is printed too;
- absorbed children: the fraction of children whose (parent + child) direction has a decoder row at cosine >= 0.9;
- explained variance on held-out tokens.
Ends with BENCH lines: Matryoshka's figure, goal: at least (absorbed children: at most) BatchTopK's measured in the
same run; explained variance within 5% of it. `--quick` runs one seed on 300k tokens (about half a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_line import bench_line
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.formats import load_saelens
from mistudio_tui.ml.sae.trainer import train_sae
from mistudio_tui.units import parse_count

PARENT_COSINE = 0.8
ABSORBED_COSINE = 0.9
torch.set_num_threads(1)  # the SAEs are tiny: more threads only contend
NOISE = 0.01  # standard deviation per dimension of the added Gaussian noise


@dataclass
class World:
    """Ground truth: directions [parents + parents * children, d_in], parents first, children grouped by parent."""

    directions: Tensor
    parents: int
    children: int
    parent_rate: float

    @classmethod
    def random(cls, d_in: int, parents: int, children: int, parent_rate: float, seed: int) -> World:
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(parents * (1 + children), d_in, generator=gen)
        return cls(directions / directions.norm(dim=1, keepdim=True), parents, children, parent_rate)

    @property
    def n_features(self) -> int:
        return self.directions.shape[0]

    @property
    def mean_l0(self) -> float:
        return 2 * self.parents * self.parent_rate  # each active parent brings exactly one child

    def sample(self, n: int, seed: int) -> Tensor:
        """n tokens: active parents, one child each, magnitudes U(0.5, 1.5), plus noise."""
        gen = torch.Generator().manual_seed(seed)
        active = torch.rand(n, self.parents, generator=gen) < self.parent_rate
        child = torch.randint(self.children, (n, self.parents), generator=gen)
        codes = torch.zeros(n, self.n_features)
        codes[:, : self.parents] = active.float()
        child_index = self.parents + torch.arange(self.parents) * self.children + child  # [n, parents]
        codes.scatter_(1, child_index, active.float())
        codes *= torch.rand(n, self.n_features, generator=gen) + 0.5
        return codes @ self.directions + NOISE * torch.randn(n, self.directions.shape[1], generator=gen)


@dataclass
class Scores:
    mcc: float
    parents_recovered: float
    parent_cosine: float
    child_cosine: float
    absorbed_children: float
    explained_variance: float
    seconds: float


def score(world: World, W_dec: Tensor, reconstruction: Tensor, held_out: Tensor, seconds: float) -> Scores:
    """The scores of one SAE's decoder rows against the world's directions (see the module docstring)."""
    rows = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = world.directions @ rows.T  # [true, learned]
    true_index, learned_index = linear_sum_assignment(-cos.abs().numpy())
    best = cos.max(dim=1).values
    parents, children = world.directions[: world.parents], world.directions[world.parents :]
    combined = children + parents.repeat_interleave(world.children, dim=0)
    combined = combined / combined.norm(dim=1, keepdim=True)
    error = (held_out - reconstruction).pow(2).sum()
    variance = (held_out - held_out.mean(0)).pow(2).sum()
    return Scores(
        mcc=float(cos.abs()[true_index, learned_index].mean()),
        parents_recovered=float((best[: world.parents] >= PARENT_COSINE).float().mean()),
        parent_cosine=float(best[: world.parents].mean()),
        child_cosine=float(best[world.parents :].mean()),
        absorbed_children=float(((combined @ rows.T).max(dim=1).values >= ABSORBED_COSINE).float().mean()),
        explained_variance=float(1 - error / variance),
        seconds=seconds,
    )


def train_and_score(
    world: World, architecture: str, data: Tensor, held_out: Tensor, k: int, batch: int, device: str, seed: int
) -> Scores:
    sae_cfg = SAEConfig(d_in=data.shape[1], d_sae=world.n_features, k=k, architecture=architecture)
    train_cfg = TrainConfig(total_tokens=data.shape[0], batch_size=batch, device=device, seed=seed, eval_tokens=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        train_sae(sae_cfg, train_cfg, TensorBatchSource(data, seed=seed), Path(folder), LocalContext())
        sae, _, _ = load_saelens(Path(folder))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return score(world, sae.W_dec.detach().cpu(), sae(held_out).cpu(), held_out, seconds)


def describe(s: Scores) -> str:
    return (
        f"mcc {s.mcc:.3f}  parents recovered {s.parents_recovered:.3f} (mean best cos {s.parent_cosine:.3f})  "
        f"children mean best cos {s.child_cosine:.3f}  absorbed children {s.absorbed_children:.3f}  "
        f"ev {s.explained_variance:.4f}  {s.seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tokens", type=lambda text: parse_count(text, "--tokens"), default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--d-in", type=int, default=64)
    parser.add_argument("--parents", type=int, default=16)
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--parent-rate", type=float, default=0.125)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="one seed, 300k tokens")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.tokens = 1, min(args.tokens, 300_000)
    results: dict[str, list[Scores]] = {"batchtopk": [], "matryoshka": []}
    for seed in range(args.seeds):
        world = World.random(args.d_in, args.parents, args.children, args.parent_rate, seed=1000 + seed)
        data, held_out = world.sample(args.tokens, seed=seed), world.sample(16_384, seed=10_000 + seed)
        k = max(1, round(world.mean_l0))
        for architecture, scores in results.items():
            s = train_and_score(world, architecture, data, held_out, k, args.batch_size, args.device, seed)
            scores.append(s)
            print(f"seed {seed} {architecture:>10}: {describe(s)}", flush=True)
    mean = {
        arch: Scores(**{f: statistics.mean(getattr(s, f) for s in scores) for f in Scores.__dataclass_fields__})
        for arch, scores in results.items()
    }
    print(
        f"world: d_in {args.d_in}, {args.parents} parents x {args.children} exclusive children "
        f"({world.n_features} features), parent rate {args.parent_rate}, k {k}; {args.tokens:,} tokens, "
        f"batch {args.batch_size}, {args.seeds} seed(s); means:"
    )
    for arch, m in mean.items():
        print(f"  {arch:>10}: {describe(m)}")
    ours, ref = mean["matryoshka"], mean["batchtopk"]
    for name, field, op in (
        ("mcc", "mcc", ">="),
        ("parents_recovered", "parents_recovered", ">="),
        ("absorbed_children", "absorbed_children", "<="),
    ):
        unit = "mcc" if field == "mcc" else "fraction"
        print(bench_line(f"matryoshka_hier_{name}", getattr(ours, field), unit, op, round(getattr(ref, field), 3)))
    ev_floor = round(0.95 * ref.explained_variance, 3)
    print(bench_line("matryoshka_hier_explained_variance", ours.explained_variance, "ev", ">=", ev_floor))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
