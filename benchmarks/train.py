"""SAE training throughput: our trainer vs a plain dense PyTorch SAE of the same shape, in one process.

    python benchmarks/train.py [--quick] [--device D]

Prints a table, then `BENCH <name> <value> <unit> goal <op> <target> <ok|short>` lines.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_models import sync
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.device import pick_device
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.trainer import SAETrainer

ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
SPARSE = ("topk", "batchtopk")
VS_REFERENCE_GOAL = 1.0  # every architecture at least as fast as the plain PyTorch SAE of the same shape
TOPK_VS_RELU_GOAL = 1.5  # TopK at k=32 of 6144 latents must use its sparsity, not just match the dense ReLU SAE


def timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per call of `step`, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


class _Jump(torch.autograd.Function):
    """Reference JumpReLU / step with the rectangle-kernel pseudo-gradient for the threshold."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float, with_value: bool) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth, ctx.with_value = bandwidth, with_value
        gate = (pre > threshold).to(pre.dtype)
        return pre * gate if with_value else gate

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, None, None]:
        pre, threshold = ctx.saved_tensors
        near = ((pre - threshold).abs() < ctx.bandwidth / 2).to(pre.dtype) / ctx.bandwidth
        if ctx.with_value:
            return (pre > threshold) * grad, (-threshold * near * grad).sum(0), None, None
        return None, (-near * grad).sum(0), None, None


class DenseReference:
    """The same SAE written plainly: dense matmuls, autograd everywhere, torch.optim.Adam defaults."""

    def __init__(
        self,
        architecture: str,
        d_in: int,
        d_sae: int,
        k: int,
        device: torch.device,
        bf16: bool = False,
        foreach: bool | None = None,
    ) -> None:
        self.architecture, self.k, self.bf16 = architecture, k, bf16
        W = torch.randn(d_sae, d_in, device=device)
        W /= W.norm(dim=1, keepdim=True)
        self.W_dec = W.clone().requires_grad_()
        self.W_enc = W.t().clone().requires_grad_()
        self.b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
        self.b_dec = torch.zeros(d_in, device=device, requires_grad=True)
        self.threshold = torch.full((d_sae,), 0.1, device=device, requires_grad=True)
        params = [self.W_enc, self.W_dec, self.b_enc, self.b_dec]
        if architecture == "jumprelu":
            params.append(self.threshold)
        self.optimizer = torch.optim.Adam(params, lr=1e-4, foreach=foreach)

    def step(self, x: Tensor) -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss(x)
        self.optimizer.zero_grad()
        loss.backward()
        if self.architecture in SPARSE:
            with torch.no_grad():
                grad = self.W_dec.grad
                grad -= (grad * self.W_dec).sum(1, keepdim=True) * self.W_dec
        self.optimizer.step()
        if self.architecture in SPARSE:
            with torch.no_grad():
                self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    def loss(self, x: Tensor) -> Tensor:
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        sparsity = pre.new_zeros(())
        if self.architecture == "topk":
            values, index = pre.topk(self.k, dim=-1)
            codes = torch.zeros_like(pre).scatter(-1, index, values.relu())
        elif self.architecture == "batchtopk":
            flat = pre.relu().flatten()
            values, index = flat.topk(self.k * x.shape[0])
            codes = torch.zeros_like(flat).scatter(0, index, values).view_as(pre)
        elif self.architecture == "standard":
            codes = pre.relu()
            sparsity = (codes * self.W_dec.norm(dim=1)).sum(-1).mean()
        else:
            codes = _Jump.apply(pre, self.threshold, 0.05, True)
            sparsity = _Jump.apply(pre, self.threshold, 0.05, False).sum(-1).mean()
        x_hat = codes @ self.W_dec + self.b_dec
        return (x_hat.float() - x).pow(2).sum(-1).mean() + sparsity


def our_step(
    architecture: str,
    data: Tensor,
    d_sae: int,
    k: int,
    batch: int,
    device: torch.device,
    sparse: bool | None = None,
    dtype: str = "fp32",
) -> Callable[[], None]:
    """A prepared SAETrainer whose `train_step` is what we time."""
    sae_cfg = SAEConfig(d_in=data.shape[1], d_sae=d_sae, k=k, architecture=architecture)
    train_cfg = TrainConfig(
        total_tokens=10**10, batch_size=batch, init_tokens=batch, device=str(device), sparse_kernels=sparse, dtype=dtype
    )
    trainer = SAETrainer(sae_cfg, train_cfg, TensorBatchSource(data), Path(tempfile.mkdtemp()), LocalContext())
    trainer.prepare(resume=False)
    return trainer.train_step


def matmul_seconds(batch: int, d_in: int, d_sae: int, device: torch.device, repeats: int) -> float:
    a = torch.randn(batch, d_in, device=device)
    b = torch.randn(d_in, d_sae, device=device)
    return timed(lambda: a @ b, 1, repeats, device)


def bench_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value >= target if op == ">=" else value <= target
    return f"BENCH {name} {value:.3g} {unit} goal {op} {target:g} {'ok' if ok else 'short'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (under a minute on 2 CPU cores)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast, fp32 weights")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    d_in, batch, k = args.d_in, args.batch_size, args.k
    d_sae = d_in * args.expansion
    warmup, steps = (1, 1) if args.quick else (2, 8)
    if device.type == "cuda":  # GPU steps take milliseconds: time enough of them to rise above launch noise
        warmup, steps = (5, 30) if args.quick else (10, 100)
    architectures = [a.strip() for a in args.architectures.split(",") if a.strip()]
    torch.manual_seed(0)
    data = torch.randn(4 * batch, d_in) * 3 + 0.5
    x_ref = (data[:batch] * math.sqrt(d_in) / data[:batch].norm(dim=1).mean()).to(device)

    t_matmul = matmul_seconds(batch, d_in, d_sae, device, 3 if args.quick else 10)
    peak = batch / t_matmul
    print(
        f"device {device}, {args.dtype}; d_in {d_in}, d_sae {d_sae}, batch {batch}, k {k}; "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"matmul [{batch},{d_in}]x[{d_in},{d_sae}]: {t_matmul * 1e3:.1f} ms -> one-matmul peak {peak:,.0f} tok/s")
    # Like for like, our trainer reads its batches from activations already on the device, as the reference does;
    # on a GPU it is also timed streaming them from host memory (what a run over a big activation set does).
    streamed = device.type != "cpu"
    print(
        f"{'architecture':<12} {'ours tok/s':>12} {'ref tok/s':>12} {'ours/ref':>9} {'of peak':>8}"
        + (f" {'from host':>12} {'host/ref':>9}" if streamed else "")
    )
    ours: dict[str, float] = {}
    refs: dict[str, float] = {}
    on_device = data.to(device)
    for architecture in architectures:
        step = our_step(architecture, on_device, d_sae, k, batch, device, dtype=args.dtype)
        ours[architecture] = batch / timed(step, warmup, steps, device)
        reference = DenseReference(architecture, d_in, d_sae, k, device, bf16=args.dtype == "bf16")
        refs[architecture] = batch / timed(lambda r=reference: r.step(x_ref), warmup, steps, device)
        line = (
            f"{architecture:<12} {ours[architecture]:>12,.0f} {refs[architecture]:>12,.0f} "
            f"{ours[architecture] / refs[architecture]:>9.2f} {ours[architecture] / peak:>8.2f}"
        )
        if streamed:
            host = batch / timed(
                our_step(architecture, data, d_sae, k, batch, device, dtype=args.dtype), warmup, steps, device
            )
            line += f" {host:>12,.0f} {host / refs[architecture]:>9.2f}"
        print(line)
    dense_kernels = 0.0
    if "topk" in architectures:
        dense_kernels = batch / timed(
            our_step("topk", data, d_sae, k, batch, device, sparse=False, dtype=args.dtype), warmup, steps, device
        )
        sparse_kernels = batch / timed(
            our_step("topk", data, d_sae, k, batch, device, sparse=True, dtype=args.dtype), warmup, steps, device
        )
        print(f"{'topk, dense kernels':<12} {dense_kernels:>12,.0f}")
        print(f"{'topk, sparse kernels':<12} {sparse_kernels:>12,.0f}  (the default: sparse on CPU, dense on CUDA)")
    for architecture in architectures:
        ratio = ours[architecture] / refs[architecture]
        print(bench_line(f"train_{architecture}_vs_ref", ratio, "x", ">=", VS_REFERENCE_GOAL))
    if dense_kernels:
        print(bench_line("train_topk_sparse_vs_dense_kernels", sparse_kernels / dense_kernels, "x", ">=", 1.0))
    if "topk" in ours and "standard" in ours:
        print(bench_line("train_topk_vs_relu", ours["topk"] / ours["standard"], "x", ">=", TOPK_VS_RELU_GOAL))
    for architecture in architectures:
        target = 0.4 if architecture in SPARSE else 0.15
        print(bench_line(f"train_{architecture}_of_matmul_peak", ours[architecture] / peak, "fraction", ">=", target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
