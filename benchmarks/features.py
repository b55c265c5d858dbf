"""Feature extraction throughput against the model forward + SAE encode alone, in the same run (goal >= 0.8).

    python benchmarks/features.py [--quick] [--device auto|cpu|cuda] [--d-model N] [--expansion N]

Builds a random GPT-2 (saved with save_pretrained into a temp folder), a random tokenization and a random TopK SAE,
then times over the same rows, best of 3:
- reference: capture the hook's activations in a forward pass (stopping after the hooked block, as extraction
  does) and `sae.encode` them, nothing else;
- extraction: the job's own streaming path (`sequence_batches` + `extract_feature_stats`: density, means, max,
  histogram, top-k and quantile examples with windows) including `finalize`.
The one-off post-processing of the job (logit lens, similar features, writing the store) is timed separately.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_line import bench_line  # noqa: E402
from bench_models import BOS, build_model, build_tokens, sync  # noqa: E402

from mistudio_tui.jobs.context import LocalContext  # noqa: E402
from mistudio_tui.jobs.tasks.features import sequence_batches  # noqa: E402
from mistudio_tui.ml.data.token_store import TokenStore  # noqa: E402
from mistudio_tui.ml.features.extract import ExtractionOptions, extract_feature_stats  # noqa: E402
from mistudio_tui.ml.features.logit_lens import logit_lens  # noqa: E402
from mistudio_tui.ml.features.similarity import similar_by_decoder  # noqa: E402
from mistudio_tui.ml.features.store import FeatureSetWriter  # noqa: E402
from mistudio_tui.ml.models.hooks import capture  # noqa: E402
from mistudio_tui.ml.models.loading import load_model  # noqa: E402
from mistudio_tui.ml.sae.architectures import create_sae  # noqa: E402
from mistudio_tui.ml.sae.config import SAEConfig  # noqa: E402

GOAL = 0.8


def reference(loaded, sae, tokens: TokenStore, hook: str, batch_size: int) -> float:
    """Seconds to capture the hook's activations and encode them with the SAE, row batches as extraction reads."""
    device = loaded.device
    start = time.perf_counter()
    with capture(loaded.model, [hook]) as cap, torch.no_grad():
        for _, rows, lengths in tokens.iter_batches(batch_size):
            ids = torch.as_tensor(rows, dtype=torch.long)
            length = torch.tensor(lengths, dtype=torch.long)
            attention = (torch.arange(ids.shape[1])[None, :] < length[:, None]).long()
            cap.run(input_ids=ids.to(device), attention_mask=attention.to(device))
            acts = cap[hook].float()
            sae.encode(acts.reshape(-1, acts.shape[-1]))
    sync(device)
    return time.perf_counter() - start


def extraction(loaded, sae, tokens: TokenStore, hook: str, batch_size: int, options: ExtractionOptions):
    """Seconds of the job's streaming extraction over every row, and its statistics."""
    start = time.perf_counter()
    batches = sequence_batches(loaded, tokens, hook, batch_size, [BOS])
    try:
        stats = extract_feature_stats(batches, sae.encode, int(sae.W_dec.shape[0]), options, LocalContext())
    finally:
        batches.close()
    sync(loaded.device)
    return time.perf_counter() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--expansion", type=int, default=None, help="d_sae / d_model (default 16; quick 8)")
    parser.add_argument("--k", type=int, default=32, help="active latents per token of the TopK SAE")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (the job's default)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per timing (default 131072; quick 8192)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--encode-chunk", type=int, default=None, help="tokens encoded at once (default: the job's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    context, vocab = 128, 2048
    d_model = args.d_model or (128 if args.quick else 256)
    expansion = args.expansion or (8 if args.quick else 16)
    n_tokens = args.tokens or (8_192 if args.quick else 131_072)
    n_rows = max(1, n_tokens // context)
    hook = f"blocks.{args.layers // 2}.hook_resid_post"
    options = ExtractionOptions(top_k=20, n_quantiles=5, per_quantile=4, context=(12, 4), special_ids=(BOS,))
    if args.encode_chunk:
        options.encode_chunk_tokens = args.encode_chunk

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loaded = load_model(build_model(root / "model", d_model, args.layers, context, vocab), device=args.device)
        tokens = build_tokens(root / "tokens", n_rows, context, vocab)
        warm = build_tokens(root / "warm", 2 * args.batch_size, context, vocab)
        torch.manual_seed(0)
        cfg = SAEConfig(d_in=d_model, architecture="topk", d_sae=d_model * expansion, k=args.k)
        sae = create_sae(cfg).to(loaded.device).eval()
        print(
            f"device {loaded.device} ({torch.get_num_threads()} CPU threads), d_model {d_model}, {args.layers} layers, "
            f"hook {hook}, d_sae {cfg.d_sae} (topk k={args.k}), batch {args.batch_size}, {n_rows * context} tokens"
        )
        reference(loaded, sae, warm, hook, args.batch_size)
        extraction(loaded, sae, warm, hook, args.batch_size, options)
        ref_times, ext_times = [], []
        stats = None
        for _ in range(3):
            ref_times.append(reference(loaded, sae, tokens, hook, args.batch_size))
            seconds, stats = extraction(loaded, sae, tokens, hook, args.batch_size, options)
            ext_times.append(seconds)
        ref_tps = n_rows * context / min(ref_times)
        ext_tps = n_rows * context / min(ext_times)
        start = time.perf_counter()
        W_dec = sae.W_dec.detach().float()
        lens = logit_lens(W_dec, loaded.model.get_output_embeddings().weight.detach().float(), top=10)
        similar = similar_by_decoder(W_dec, top=10)
        FeatureSetWriter(root / "features").write(stats, {}, logit_lens=lens, similar=similar)
        post = time.perf_counter() - start
    print(f"forward + encode  {ref_tps:12,.0f} tokens/s  (best of {len(ref_times)})")
    print(f"extraction        {ext_tps:12,.0f} tokens/s  (best of {len(ext_times)})")
    print(f"post-processing (logit lens, similar features, writing the store): {post:.2f} s once per feature set")
    print(bench_line("features_extract_vs_forward_encode", ext_tps / ref_tps, "x", ">=", GOAL))


if __name__ == "__main__":
    main()
