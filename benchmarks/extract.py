"""Activation extraction throughput against a bare forward pass of the same model, and peak RSS as tokens grow.

    python benchmarks/extract.py [--quick] [--device auto|cpu|cuda]

Builds a small random GPT-2 (saved with save_pretrained into a temp folder) and a random tokenization, then:
1. tokens/s of `extract_activations` (hooking the last block, writing float32 shards) vs a plain `model(ids)` loop
   over the same rows in the same process (goal: ratio >= 0.9);
2. peak RSS of an extraction of N tokens and of 10N tokens, each in a fresh child process (goal: ratio <= 1.1).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_models import build_model, build_tokens, sync  # noqa: E402
from mistudio_tui.jobs.context import LocalContext  # noqa: E402
from mistudio_tui.ml.activations.extract import extract_activations  # noqa: E402
from mistudio_tui.ml.data.token_store import TokenStore  # noqa: E402
from mistudio_tui.ml.models.loading import load_model  # noqa: E402


def bare_forward(loaded, tokens: TokenStore, n_rows: int, batch_size: int) -> float:
    """Seconds for plain forward passes over the first `n_rows` rows (reading rows the same way)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, n_rows, batch_size):
            ids = torch.from_numpy(np.asarray(tokens.tokens[lo : min(lo + batch_size, n_rows)], dtype=np.int64))
            loaded.model(input_ids=ids.to(loaded.device), use_cache=False)
    sync(loaded.device)
    return time.perf_counter() - start


def extraction(loaded, tokens: TokenStore, out: Path, n_tokens: int, batch_size: int, shard_tokens: int) -> float:
    """Seconds for an extraction of `n_tokens` kept tokens of the last block's residual stream."""
    hook = f"blocks.{loaded.config.n_layer - 1}.hook_resid_post"
    start = time.perf_counter()
    extract_activations(
        loaded, tokens, [hook], out, n_tokens, batch_size=batch_size, shard_tokens=shard_tokens, ctx=LocalContext()
    )
    sync(loaded.device)
    return time.perf_counter() - start


def child_rss(args: argparse.Namespace) -> None:
    """Child process: one extraction of --rss-tokens tokens; prints peak RSS in bytes."""
    loaded = load_model(args.model_dir, device=args.device)
    tokens = TokenStore(Path(args.tokens_dir))
    with tempfile.TemporaryDirectory() as tmp:
        extraction(loaded, tokens, Path(tmp) / "acts", args.rss_tokens, args.batch_size, args.shard_tokens)
    print(json.dumps({"max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_child(args: argparse.Namespace, model_dir: Path, tokens_dir: Path, n_tokens: int) -> int:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--model-dir",
        str(model_dir),
        "--tokens-dir",
        str(tokens_dir),
        "--rss-tokens",
        str(n_tokens),
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--shard-tokens",
        str(args.shard_tokens),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["max_rss"])


def bench_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value >= target if op == ">=" else value <= target
    return f"BENCH {name} {value:.3f} {unit} goal {op} {target} {'ok' if ok else 'short'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None, help="transformer blocks (default 4)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--shard-tokens", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--tokens-dir", help=argparse.SUPPRESS)
    parser.add_argument("--rss-tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_rss(args)
        return
    context, vocab = 128, 2048
    d_model = args.d_model or (128 if args.quick else 256)
    args.layers = args.layers or 4
    speed_tokens = 8192 if args.quick else 262_144
    rss_tokens = 4000 if args.quick else 100_000
    args.shard_tokens = args.shard_tokens or (4096 if args.quick else 65536)
    n_rows = max(speed_tokens, 10 * rss_tokens) // (context - 1) + 2

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_model(root / "model", d_model, args.layers, context, vocab)
        tokens = build_tokens(root / "tokens", n_rows, context, vocab)
        loaded = load_model(model_dir, device=args.device)
        speed_rows = speed_tokens // context
        kept = speed_rows * (context - 1)  # BOS is excluded from the stored rows
        print(f"device {loaded.device} ({torch.get_num_threads()} CPU threads), d_model {d_model}, "
              f"{args.layers} layers, context {context}, batch {args.batch_size}, "
              f"{speed_rows * context} tokens per timing")  # fmt: skip
        bare_forward(loaded, tokens, 2 * args.batch_size, args.batch_size)  # warm-up
        extraction(loaded, tokens, root / "warm", 2 * args.batch_size * (context - 1), args.batch_size, 4096)
        bare_times, extract_times = [], []
        for repeat in range(3):
            bare_times.append(bare_forward(loaded, tokens, speed_rows, args.batch_size))
            extract_times.append(
                extraction(loaded, tokens, root / f"acts{repeat}", kept, args.batch_size, args.shard_tokens)
            )
        bare_tps = speed_rows * context / min(bare_times)
        extract_tps = speed_rows * context / min(extract_times)
        print(f"bare forward   {bare_tps:12,.0f} tokens/s  (best of {len(bare_times)})")
        print(f"extraction     {extract_tps:12,.0f} tokens/s  (best of {len(extract_times)})")

        small = run_child(args, model_dir, root / "tokens", rss_tokens)
        large = run_child(args, model_dir, root / "tokens", 10 * rss_tokens)
        growth_mb = (large - small) / 2**20
        activations_mb = 10 * rss_tokens * d_model * 4 / 2**20
        print(f"peak RSS {rss_tokens} tokens: {small / 2**20:8.1f} MiB")
        print(f"peak RSS {10 * rss_tokens} tokens: {large / 2**20:8.1f} MiB  (+{growth_mb:.1f} MiB; "
              f"the activations written total {activations_mb:.0f} MiB)")  # fmt: skip
        print(bench_line("extract_vs_forward", extract_tps / bare_tps, "x", ">=", 0.9))
        print(bench_line("extract_rss_10x_tokens", large / small, "x", "<=", 1.1))


if __name__ == "__main__":
    main()
