"""SAE quality: our default TopK recipe vs EleutherAI sparsify's recipe vs a naive SAE, same data and budget.

    python benchmarks/sae_quality.py --activations PATH [--key K] [--k 32] [--expansion 8]
        [--tokens N] [--batch-size 4096] [--device auto] [--quick]

PATH is an activation-set folder (its first hook, or `--key HOOK`) or a safetensors file holding a [tokens, d_in]
tensor. The last `--holdout` fraction of its rows is held out; all three SAEs are trained on the rest with the same
k, width and token budget, then scored on the held-out rows by the same code (explained variance, and the fraction
of latents that never fire there). `--quick` caps the budget at 300k tokens. Ends with `BENCH` lines.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.activations.store import ActivationStore
from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.device import pick_device
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.evaluate import evaluate_reconstruction
from mistudio_tui.ml.sae.formats import load_saelens
from mistudio_tui.ml.sae.sparse_ops import sparse_decode, sparse_encode
from mistudio_tui.ml.sae.trainer import train_sae


def load_activations(path: Path, key: str | None) -> Tensor:
    """The [tokens, d_in] rows of an activation-set folder (hook `key` or its first) or of a safetensors file."""
    if path.is_dir():
        store = ActivationStore(path)
        return store.read(key or store.hooks[0]).float()
    if not path.is_file():
        raise FileNotFoundError(f"activations file {path} does not exist")
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        keys = list(handle.keys())
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{path} holds tensors {', '.join(keys)}; choose one with --key")
            key = keys[0]
        if key not in keys:
            raise ValueError(f"{path} has no tensor {key!r}; it holds {', '.join(keys)}")
        data = handle.get_tensor(key)
    if data.ndim != 2:
        raise ValueError(f"{path}: tensor {key!r} has shape {tuple(data.shape)}, expected [tokens, d_in]")
    return data.float()


def _topk_sae(W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, k: int) -> SparseAutoencoder:
    d_in, d_sae = W_enc.shape
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, k=k, architecture="topk", normalize_activations=False)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    return sae_from_tensors(cfg, {name: t.detach().cpu() for name, t in tensors.items()})


def train_ours(data: Tensor, d_sae: int, k: int, tokens: int, batch: int, device: str, seed: int) -> SparseAutoencoder:
    """miStudio's default TopK recipe, untouched except for the shared budget."""
    sae_cfg = SAEConfig(d_in=data.shape[1], d_sae=d_sae, k=k, architecture="topk")
    train_cfg = TrainConfig(total_tokens=tokens, batch_size=batch, device=device, seed=seed, eval_tokens=0)
    with tempfile.TemporaryDirectory() as folder:
        train_sae(sae_cfg, train_cfg, TensorBatchSource(data, seed=seed), Path(folder), LocalContext())
        sae, _, _ = load_saelens(Path(folder))
    return sae


# sparsify's Adam recipe: nn.Linear encoder init, decoder = its unit-norm copy, b_dec = mean of the first batch,
# lr 2e-4 / sqrt(d_sae / 2^14) with 1000 warmup steps then linear decay to 0, FVU loss + AuxK / 32 (dead after
# 10M tokens, residual target, b_dec in the AuxK decode), unit-norm decoder rows with the parallel gradient
# removed, raw (unnormalised) activations, no gradient clipping.
def train_sparsify_recipe(
    data: Tensor, d_sae: int, k: int, tokens: int, batch: int, device: torch.device, seed: int
) -> SparseAutoencoder:
    """EleutherAI sparsify's TopK training recipe, re-implemented (see the comment above)."""
    torch.manual_seed(seed)
    d_in = data.shape[1]
    bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default kaiming_uniform(a=sqrt(5)) bound
    encoder = torch.empty(d_sae, d_in).uniform_(-bound, bound)
    W_enc = encoder.t().contiguous().to(device).requires_grad_()
    W_dec = (encoder / encoder.norm(dim=1, keepdim=True)).to(device).requires_grad_()
    b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
    b_dec = torch.zeros(d_in, device=device, requires_grad=True)
    steps = max(1, tokens // batch)
    warmup = 1000
    optimizer = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=2e-4 / math.sqrt(d_sae / 2**14))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
    source = TensorBatchSource(data, seed=seed)
    for step in range(steps):
        x = source.next_batch(batch).to(device)
        with torch.no_grad():
            if step == 0:
                b_dec.copy_(x.mean(0))
            W_dec.div_(W_dec.norm(dim=1, keepdim=True) + torch.finfo(W_dec.dtype).eps)
        dead = since_fired > 10_000_000
        main, aux = sparse_encode(x, W_enc, b_enc, b_dec, k, dead_mask=dead, aux_k=d_in // 2)
        x_hat = sparse_decode(main, W_dec) + b_dec
        residual = x - x_hat
        total_variance = (x - x.mean(0)).pow(2).sum()
        loss = residual.pow(2).sum() / total_variance
        if aux is not None:
            n_dead = int(dead.sum())
            scale = min(n_dead / (d_in // 2), 1.0)
            e_hat = sparse_decode(aux, W_dec) + b_dec
            loss = loss + scale * (e_hat - residual.detach()).pow(2).sum() / total_variance / 32
        loss.backward()
        with torch.no_grad():
            grad = W_dec.grad
            grad -= (grad * W_dec).sum(1, keepdim=True) * W_dec
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        with torch.no_grad():
            since_fired += batch
            since_fired[main.cols] = 0
    return _topk_sae(W_enc, b_enc, W_dec, b_dec, k)


def train_naive(
    data: Tensor, d_sae: int, k: int, tokens: int, batch: int, device: torch.device, seed: int
) -> SparseAutoencoder:
    """The failure mode: random Gaussian init, zero biases, plain Adam at 1e-3, MSE only, no constraints."""
    torch.manual_seed(seed)
    d_in = data.shape[1]
    W_enc = (torch.randn(d_in, d_sae) / math.sqrt(d_in)).to(device).requires_grad_()
    W_dec = (torch.randn(d_sae, d_in) / math.sqrt(d_sae)).to(device).requires_grad_()
    b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
    b_dec = torch.zeros(d_in, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=1e-3)
    source = TensorBatchSource(data, seed=seed)
    for _ in range(max(1, tokens // batch)):
        x = source.next_batch(batch).to(device)
        main, _ = sparse_encode(x, W_enc, b_enc, b_dec, k)
        loss = (sparse_decode(main, W_dec) + b_dec - x).pow(2).sum(-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return _topk_sae(W_enc, b_enc, W_dec, b_dec, k)


def bench_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value >= target if op == ">=" else value <= target
    return f"BENCH {name} {value:.4g} {unit} goal {op} {target:.4g} {'ok' if ok else 'short'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--activations", type=Path, required=True, help="activation-set folder, or safetensors file of [tokens, d_in]"
    )
    parser.add_argument("--key", default=None, help="hook of the set / tensor name in the file (when several)")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=None, help="training tokens (default: one pass)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction of rows (the last ones) held out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="cap the budget at 300k tokens (about a minute on CPU)")
    parser.add_argument("--recipes", default="ours,sparsify,naive", help="comma-separated subset to run")
    args = parser.parse_args(argv)

    data = load_activations(args.activations, args.key)
    n_hold = max(1, int(len(data) * args.holdout))
    train, held_out = data[:-n_hold], data[-n_hold:]
    d_in = data.shape[1]
    d_sae = d_in * args.expansion
    tokens = args.tokens or len(train)
    if args.quick:
        tokens = min(tokens, 300_000)
    batch = min(args.batch_size, len(train))
    device = pick_device(args.device)
    print(f"{len(train):,} training rows, {n_hold:,} held out; d_in {d_in}, d_sae {d_sae}, k {args.k}")
    print(f"budget {tokens:,} tokens in batches of {batch} on {device}")

    recipes: dict[str, Callable[[], SparseAutoencoder]] = {
        "ours": lambda: train_ours(train, d_sae, args.k, tokens, batch, str(device), args.seed),
        "sparsify": lambda: train_sparsify_recipe(train, d_sae, args.k, tokens, batch, device, args.seed),
        "naive": lambda: train_naive(train, d_sae, args.k, tokens, batch, device, args.seed),
    }
    results: dict[str, dict[str, float]] = {}
    print(f"{'recipe':<10} {'EV':>8} {'nmse':>8} {'L0':>6} {'dead':>7} {'seconds':>8}")
    chosen = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(recipes))
    if unknown:
        raise ValueError(f"--recipes: unknown recipe(s) {', '.join(unknown)}; expected some of {', '.join(recipes)}")
    for name in chosen:
        train_recipe = recipes[name]
        start = time.perf_counter()
        sae = train_recipe().to(device)
        seconds = time.perf_counter() - start
        source = TensorBatchSource(held_out, shuffle=False)
        metrics = evaluate_reconstruction(sae, source, n_hold, batch_size=batch).metrics
        results[name] = metrics
        print(
            f"{name:<10} {metrics['explained_variance']:>8.4f} {metrics['nmse']:>8.4f} {metrics['l0']:>6.1f} "
            f"{metrics['dead_fraction']:>7.3f} {seconds:>8.1f}"
        )
    if "ours" in results and "sparsify" in results:
        ours, sparsify = results["ours"], results["sparsify"]
        print(bench_line("quality_ev_ours", ours["explained_variance"], "EV", ">=", sparsify["explained_variance"]))
        print(bench_line("quality_dead_ours", ours["dead_fraction"], "fraction", "<=", sparsify["dead_fraction"]))
    if "ours" in results and "naive" in results:
        naive = results["naive"]
        print(
            bench_line(
                "quality_ev_naive", naive["explained_variance"], "EV", "<=", results["ours"]["explained_variance"]
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
