"""Where a GPU step spends its time: torch.profiler tables for an SAE training step (ours and the plain reference)
and for one feature-accumulator update, plus how often each waits for the device (host synchronisations).

    python benchmarks/gpu_profile.py [--device cuda] [--what train,features] [--dtype fp32|bf16]

A diagnostic for tuning, not a benchmark with a goal: it prints per-step wall time, the top operators by device
and by host time, and the count of synchronising calls per step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_models import sync
from benchmarks.train import DenseReference, our_step, timed
from mistudio_tui.ml.device import pick_device
from mistudio_tui.ml.features.accumulate import FeatureAccumulator

SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::_local_scalar_dense", "aten::nonzero")


def report(name: str, step: Callable[[], None], device: torch.device, steps: int, rows: int) -> None:
    """Warm up, time `steps` calls, then profile them and print the tables."""
    wall = timed(step, 3, steps, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    events = prof.key_averages()
    syncs = {e.key: e.count / steps for e in events if e.key in SYNC_NAMES}
    print(f"\n===== {name}: {wall * 1e3:.2f} ms per step; host waits per step: {syncs}")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=rows, max_name_column_width=48))
    if device.type == "cuda":
        print(events.table(sort_by="self_cpu_time_total", row_limit=rows // 2, max_name_column_width=48))


def profile_training(device: torch.device, dtype: str, architectures: list[str], rows: int) -> None:
    d_in, d_sae, batch, k = 768, 768 * 8, 4096, 32
    torch.manual_seed(0)
    data = torch.randn(4 * batch, d_in) * 3 + 0.5
    x_ref = data[:batch].to(device)
    for architecture in architectures:
        report(
            f"ours {architecture} {dtype}",
            our_step(architecture, data, d_sae, k, batch, device, dtype=dtype),
            device,
            20,
            rows,
        )
        reference = DenseReference(architecture, d_in, d_sae, k, device, bf16=dtype == "bf16")
        report(f"reference {architecture} {dtype}", lambda r=reference: r.step(x_ref), device, 20, rows)


def profile_features(device: torch.device, rows: int) -> None:
    for d_sae in (4096, 65536):
        profile_accumulator(device, d_sae, rows)


def profile_accumulator(device: torch.device, d_sae: int, rows: int) -> None:
    """One update of 4,096 tokens of TopK codes, next to the SAE encode that produced them."""
    torch.manual_seed(0)
    batch, length, k = 32, 128, 32
    acc = FeatureAccumulator(d_sae, top_k=20, n_quantiles=5, per_quantile=4, context=(12, 4), device=device)
    pre = torch.randn(batch * length, d_sae, device=device)
    values, index = pre.topk(k, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, index, values.relu()).reshape(batch, length, d_sae)
    ids = torch.randint(0, 2048, (batch, length), device=device)
    seq = torch.arange(batch, device=device)
    valid = torch.ones(batch, length, dtype=torch.bool)
    encode = torch.nn.Linear(256, d_sae, device=device)
    acts = torch.randn(batch * length, 256, device=device)
    report(f"encode only d_sae {d_sae} ({batch * length} tokens)", lambda: encode(acts).relu(), device, 10, rows)
    report(
        f"accumulator update d_sae {d_sae} ({batch * length} tokens)",
        lambda: acc.update(codes, ids, seq, valid),
        device,
        10,
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--what", default="train,features")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--architectures", default="topk,batchtopk,standard,jumprelu")
    parser.add_argument("--rows", type=int, default=14)
    args = parser.parse_args()
    device = pick_device(args.device)
    what = {w.strip() for w in args.what.split(",")}
    if "train" in what:
        profile_training(device, args.dtype, [a.strip() for a in args.architectures.split(",")], args.rows)
    if "features" in what:
        profile_features(device, args.rows)


if __name__ == "__main__":
    main()
