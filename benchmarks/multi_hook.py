"""Several SAEs from one forward pass against one run per hook: tokens/s of N hooks trained from streamed activations.

    python benchmarks/multi_hook.py [--quick] [--device auto|cpu|cuda] [--hooks 4]

Builds a small random GPT-2 (save_pretrained into a temp folder) and a random tokenization, then trains N TopK
SAEs (one per evenly spaced block's residual stream) on activations streamed from the model (no disk cache):
1. grouped: one `ActivationStream` over the N hooks feeding N trainers in lockstep (`ml.sae.multi.train_multi`);
2. separate: N runs one after the other, each streaming its own hook (`ModelActivationSource` + `train_sae`).
Throughput counts SAE training tokens over all hooks per second of wall time; goal: grouped / separate > 1.5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_line import bench_line  # noqa: E402
from benchmarks.bench_models import build_model, build_tokens, sync  # noqa: E402
from mistudio_tui.jobs.context import LocalContext  # noqa: E402
from mistudio_tui.ml.activations.streaming import ActivationStream, ModelActivationSource  # noqa: E402
from mistudio_tui.ml.data.token_store import TokenStore  # noqa: E402
from mistudio_tui.ml.models.loading import LoadedModel, load_model  # noqa: E402
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig  # noqa: E402
from mistudio_tui.ml.sae.multi import Member, train_multi  # noqa: E402
from mistudio_tui.ml.sae.trainer import train_sae  # noqa: E402


def grouped(
    loaded: LoadedModel, tokens: TokenStore, hooks: list[str], sae: SAEConfig, train: TrainConfig, args, root: Path
) -> float:
    """Seconds to train one SAE per hook from one shared stream."""
    start = time.perf_counter()
    stream = ActivationStream(loaded, tokens, hooks, seed=0, buffer_tokens=args.buffer, batch_size=args.model_batch)
    members = [Member(i, h, sae, stream.source(h), root / f"grouped-{i}") for i, h in enumerate(hooks)]
    train_multi(members, train, LocalContext())
    sync(loaded.device)
    return time.perf_counter() - start


def separate(
    loaded: LoadedModel, tokens: TokenStore, hooks: list[str], sae: SAEConfig, train: TrainConfig, args, root: Path
) -> float:
    """Seconds to train the same SAEs one run per hook, each run streaming its own hook."""
    start = time.perf_counter()
    for i, hook in enumerate(hooks):
        source = ModelActivationSource(
            loaded, tokens, hook, seed=0, buffer_tokens=args.buffer, batch_size=args.model_batch
        )
        train_sae(sae, train, source, root / f"separate-{i}", LocalContext())
    sync(loaded.device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--hooks", type=int, default=4, help="how many hooks (N)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=None, help="training tokens per SAE")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    context, vocab = 128, 2048
    d_model = args.d_model or (128 if args.quick else 256)
    per_sae = args.tokens or (2048 if args.quick else 131_072)
    batch = 512 if args.quick else 4096
    args.buffer = 2048 if args.quick else 32768
    args.model_batch = 16
    if not 1 <= args.hooks <= args.layers:
        parser.error(f"--hooks must be between 1 and --layers ({args.layers})")
    layers = [round((i + 1) * args.layers / args.hooks) - 1 for i in range(args.hooks)]
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    sae = SAEConfig(d_in=d_model, architecture="topk", d_sae=d_model * args.expansion, k=32)
    train = TrainConfig(
        total_tokens=per_sae,
        batch_size=batch,
        init_tokens=batch,
        eval_tokens=0,
        metrics_every=10,
        checkpoint_every=10**9,
        device=args.device,
    )
    n_rows = (args.buffer * 2 + per_sae) // (context - 1) + 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loaded = load_model(build_model(root / "model", d_model, args.layers, context, vocab), device=args.device)
        tokens = build_tokens(root / "tokens", n_rows, context, vocab)
        print(
            f"device {loaded.device} ({torch.get_num_threads()} CPU threads), d_model {d_model}, {args.layers} layers, "
            f"hooks {', '.join(hooks)}, SAE width {sae.d_sae} k 32, {per_sae:,} tokens per SAE, batch {batch}",
            flush=True,
        )
        separate_s = separate(loaded, tokens, hooks, sae, train, args, root)
        grouped_s = grouped(loaded, tokens, hooks, sae, train, args, root)
    total = per_sae * len(hooks)
    grouped_tps, separate_tps = total / grouped_s, total / separate_s
    print(
        f"grouped: {grouped_s:.2f} s ({grouped_tps:,.0f} tokens/s); separate: {separate_s:.2f} s ({separate_tps:,.0f})"
    )
    print(bench_line(f"multi_hook_{len(hooks)}_tokens_per_s", grouped_tps, "tokens/s", ">", 0))
    print(bench_line(f"multi_hook_{len(hooks)}_vs_separate", grouped_tps / separate_tps, "x", ">", 1.5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
