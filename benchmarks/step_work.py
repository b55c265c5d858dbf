"""What one SAE training step asks of a GPU, counted on any machine: ours vs the plain PyTorch reference.

    python benchmarks/step_work.py [--dtype fp32|bf16] [--architectures topk,...]

A GPU step is bound by its kernel launches (each costs the host a few microseconds, so a step of many small
kernels starves the device) and by its passes over [batch, d_sae] tensors (memory bound); its matmuls are the same
in both. This script runs both steps on the CPU under the profiler and counts, per step:

- launches: leaf operators that would launch a CUDA kernel (views, allocations and the CPU-only helpers of
  reductions and scalar arithmetic are left out; a multi-tensor `_foreach_` / `_fused_` optimiser op counts once);
- big passes: launches whose tensor inputs hold at least a quarter of a float32 [batch, d_sae], and the megabytes
  those inputs hold.

A device-independent account of `benchmarks/train.py --device cuda`: the count is an approximation of CUDA's, and
the timing on a GPU remains the figure that matters. Prints a table, then BENCH lines (ours / reference ≤ 1).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train import ARCHITECTURES, DenseReference, bench_line, our_step

NO_KERNEL = {  # views, metadata and allocations: no kernel of their own
    "aten::view", "aten::as_strided", "aten::reshape", "aten::_reshape_alias", "aten::expand", "aten::t",
    "aten::transpose", "aten::detach", "detach", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze",
    "aten::split", "aten::narrow", "aten::alias", "aten::empty", "aten::empty_strided", "aten::empty_like",
    "aten::new_empty", "aten::new_empty_strided", "aten::resize_", "aten::result_type", "aten::lift_fresh",
    "aten::_unsafe_view", "aten::permute", "aten::flatten", "aten::to", "aten::expand_as", "aten::view_as",
    "aten::unbind", "aten::item", "aten::_local_scalar_dense", "aten::scalar_tensor", "aten::detach_",
    "aten::resolve_conj", "aten::resolve_neg", "aten::_has_compatible_shallow_copy_type", "aten::unflatten",
    "aten::broadcast_tensors",
}  # fmt: skip
REDUCTIONS = ("aten::sum", "aten::mean", "aten::count_nonzero")  # on CPU they fill their output first
ARITHMETIC = ("aten::add", "aten::sub", "aten::mul", "aten::div", "aten::gt", "aten::lt", "aten::ge", "aten::where")
BYTES = {"float": 4, "c10::BFloat16": 2, "long int": 8, "bool": 1, "double": 8, "int": 4}


def _multi_tensor(event: FunctionEvent) -> bool:
    return event.name.startswith(("aten::_foreach_", "aten::_fused_"))


def _ancestors(event: FunctionEvent) -> list[str]:
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


def _no_kernel(event: FunctionEvent) -> bool:
    """Operators that launch nothing on CUDA themselves."""
    name = event.name
    if not name.startswith("aten::") or name in NO_KERNEL:
        return True
    above = _ancestors(event)
    if any(a.startswith(("aten::_foreach_", "aten::_fused_")) for a in above):
        return True  # inside a multi-tensor op: counted once, at the op
    if name == "aten::fill_" and above and above[0].startswith(REDUCTIONS):
        return True  # CPU reductions zero their output; CUDA ones write it
    # dtype promotion of a scalar or an operand: CUDA kernels cast as they load
    return name in ("aten::copy_", "aten::_to_copy") and any(a.startswith(ARITHMETIC) for a in above[:3])


def launches_kernel(event: FunctionEvent) -> bool:
    """Whether `event` stands for one CUDA kernel launch: a working operator none of whose descendants is one (an
    approximation, see the module docstring)."""
    if _no_kernel(event):
        return False
    return _multi_tensor(event) or not any(_has_launch(child) for child in event.cpu_children)


def _has_launch(event: FunctionEvent) -> bool:
    return launches_kernel(event) or any(_has_launch(child) for child in event.cpu_children)


def input_bytes(event: FunctionEvent) -> int:
    total = 0
    for shape, dtype in zip(event.input_shapes, event.input_dtypes, strict=False):
        if _is_shape(shape):
            total += math.prod(shape) * BYTES.get(dtype, 4)
    return total


def largest_input(event: FunctionEvent) -> int:
    """Elements of the largest tensor input of `event` (0 for scalars only)."""
    sizes = [math.prod(shape) for shape in event.input_shapes if _is_shape(shape)]
    return max(sizes, default=0)


def _is_shape(shape: object) -> bool:
    return isinstance(shape, list) and bool(shape) and all(isinstance(v, int) for v in shape)


def step_work(
    step: Callable[[], None], big: int, steps: int = 3, floor: int = 0, warm: bool = True
) -> tuple[float, float, float, Counter[str]]:
    """(launches, big passes, their input MB, launches by operator) per call of `step`, counting only launches with
    a tensor input of more than `floor` elements."""
    if warm:
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    names: Counter[str] = Counter()
    passes = megabytes = 0.0
    for event in prof.events():
        if not launches_kernel(event) or (floor and largest_input(event) <= floor):
            continue
        names[event.name] += 1
        size = input_bytes(event)
        if size >= big:
            passes += 1
            megabytes += size / 1e6
    return sum(names.values()) / steps, passes / steps, megabytes / steps, names


def extraction_work(
    n_tokens: int, d_model: int = 256, layers: int = 4, expansion: int = 16, batch: int = 8
) -> list[str]:
    """Launches per 4,096 tokens of `features.py`'s workload: forward + encode vs the extraction job path, with one
    accumulator update per 4,096 tokens and with the update size a GPU gets. Only launches on inputs larger than one
    forward batch count: the driver's masks and token ids live on the CPU, the model and codes on the device."""
    from benchmarks import features as fb
    from mistudio_tui.ml.features.extract import chunk_tokens

    context, vocab = 128, 2048
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loaded = fb.load_model(fb.build_model(root / "model", d_model, layers, context, vocab), device="cpu")
        tokens = fb.build_tokens(root / "tokens", max(1, n_tokens // context), context, vocab)
        cfg = fb.SAEConfig(d_in=d_model, architecture="topk", d_sae=d_model * expansion, k=32)
        sae = fb.create_sae(cfg).eval()
        hook = f"blocks.{layers // 2}.hook_resid_post"
        per = len(tokens) * context / 4096
        floor = batch * context
        ref = step_work(lambda: fb.reference(loaded, sae, tokens, hook, batch), 1 << 62, 1, floor, warm=False)[0]
        gpu_chunk = chunk_tokens(fb.ExtractionOptions(), int(cfg.d_sae), torch.device("cuda"))
        print(f"d_model {d_model}, {layers} layers, d_sae {cfg.d_sae}, {len(tokens) * context} tokens")
        print(f"forward + encode: {ref / per:.0f} launches per 4,096 tokens")
        for chunk in (4096, gpu_chunk):
            options = fb.ExtractionOptions(
                top_k=20,
                n_quantiles=5,
                per_quantile=4,
                context=(12, 4),
                special_ids=(fb.BOS,),
                encode_chunk_tokens=chunk,
            )
            ours = step_work(
                lambda o=options: fb.extraction(loaded, sae, tokens, hook, batch, o), 1 << 62, 1, floor, False
            )
            print(f"extraction, {chunk:,}-token updates: {ours[0] / per:.0f} launches per 4,096 tokens")
            lines.append(bench_line(f"extract_launches_ref_over_ours_{chunk}", ref / ours[0], "x", ">=", 0.8))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--d-in", type=int, default=256, help="smaller than train.py's 768: counts do not change")
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--detail", action="store_true", help="also list the operators whose counts differ")
    parser.add_argument("--extraction", type=int, metavar="TOKENS", help="count the feature extraction's instead")
    args = parser.parse_args(argv)
    if args.extraction:
        print("\n".join(extraction_work(args.extraction)))
        return 0
    device = torch.device("cpu")
    d_in, batch, k = args.d_in, args.batch_size, args.k
    d_sae = d_in * args.expansion
    torch.manual_seed(0)
    data = torch.randn(4 * batch, d_in) * 3 + 0.5
    x_ref = data[:batch]
    big = batch * d_sae  # a quarter of a float32 [batch, d_sae] in bytes
    print(f"{args.dtype}; d_in {d_in}, d_sae {d_sae}, batch {batch}, k {k}; the GPU path (dense kernels)")
    header = f"{'launches ours':>13} {'ref':>5} {'big passes ours':>16} {'ref':>5} {'MB ours':>8} {'ref':>6}"
    print(f"{'architecture':<12} {header}")
    lines = []
    for architecture in [a.strip() for a in args.architectures.split(",") if a.strip()]:
        ours = step_work(our_step(architecture, data, d_sae, k, batch, device, sparse=False, dtype=args.dtype), big)
        # the reference as it runs on CUDA: torch.optim.Adam's default there is the multi-tensor (foreach) path
        reference = DenseReference(architecture, d_in, d_sae, k, device, bf16=args.dtype == "bf16", foreach=True)
        ref = step_work(lambda r=reference: r.step(x_ref), big)
        print(
            f"{architecture:<12} {ours[0]:>13.0f} {ref[0]:>5.0f} {ours[1]:>16.0f} {ref[1]:>5.0f} "
            f"{ours[2]:>8.0f} {ref[2]:>6.0f}"
        )
        if args.detail:
            for name in sorted(set(ours[3]) | set(ref[3])):
                if ours[3][name] != ref[3][name]:
                    print(f"    {name:<36} {ours[3][name] / 3:>5.1f} {ref[3][name] / 3:>5.1f}")
        lines.append(bench_line(f"step_{architecture}_{args.dtype}_launches_vs_ref", ours[0] / ref[0], "x", "<=", 1.0))
        lines.append(bench_line(f"step_{architecture}_{args.dtype}_big_mb_vs_ref", ours[2] / ref[2], "x", "<=", 1.0))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
