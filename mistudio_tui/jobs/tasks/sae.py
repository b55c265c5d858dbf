"""Worker side of saved SAEs: evaluate one on held-out activations and CE loss, import one from another tool."""

from __future__ import annotations

import dataclasses
import math
import posixpath
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.sae import SAEEvalParams, SAEImportParams
from mistudio_tui.jobs.kinds.train import EvalModel

CE_EVAL_SEQUENCES = 32
DEFAULT_EVAL_TOKENS = 65_536
EVAL_BATCH_SIZE = 4096
DOWNLOAD_DIR = "download"


def ce_loss_metrics(
    info: EvalModel,
    sae_dir: Path,
    hook: str,
    device: str,
    ctx: JobContext,
    sequences: int = CE_EVAL_SEQUENCES,
    hook_out: str | None = None,
) -> dict[str, float]:
    """CE loss clean / SAE spliced in / zero-ablated, fraction recovered and KL, on the tokenization's last rows;
    a transcoder (`hook_out`) replaces its output hook with its output for the input hook's activation.

    An empty dict comes back when `info` lacks the model or tokenization, or the model is not a causal LM.
    """
    model_path, tokenization_dir = info.model_path, info.tokenization_dir
    if not (info.is_causal_lm and model_path and tokenization_dir):
        return {}
    import numpy as np
    import torch

    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.models.hooks import patch_activation
    from mistudio_tui.ml.models.loading import load_model
    from mistudio_tui.ml.sae.evaluate import TranscoderSplice, evaluate_ce_loss
    from mistudio_tui.ml.sae.formats import load_any

    ctx.progress(0, None, text="evaluating CE loss with the SAE spliced in")
    loaded = load_model(model_path, dtype=info.model_dtype or "float32", device=device)
    sae_file = load_any(sae_dir, device=loaded.device)
    sae = sae_file.sae.eval()
    if sae.cfg.is_transcoder:  # spliced in at the hook it writes, never at the one it reads
        hook_out = hook_out or sae_file.metadata.get("hook_name_out")
        if not hook_out:
            ctx.log(f"{sae_dir} is a transcoder that does not say which hook it writes: no CE-loss evaluation")
            return {}
    tokens = TokenStore(tokenization_dir)
    start = max(len(tokens) - max(1, sequences), 0)  # the end of the tokenization: least likely trained on

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, rows, lengths in tokens.iter_batches(8, start=start):
            ids = torch.from_numpy(np.array(rows, dtype=np.int64))
            valid = torch.from_numpy(np.array(lengths, dtype=np.int64))
            mask = (torch.arange(ids.shape[1])[None, :] < valid[:, None]).long()
            yield ids.to(loaded.device), mask.to(loaded.device)

    spliced: Any = TranscoderSplice(sae) if hook_out else sae

    def patch(fn: Any) -> Any:
        if not hook_out:
            return patch_activation(loaded.model, hook, fn)
        stack = ExitStack()  # record the input hook, replace the output hook
        stack.enter_context(patch_activation(loaded.model, hook, spliced.record))
        stack.enter_context(patch_activation(loaded.model, hook_out, fn))
        return stack

    bos = tokens.meta.get("bos_token_id") if tokens.meta.get("prepend_bos") else None
    result = evaluate_ce_loss(loaded.model, spliced, patch, batches(), bos_token_id=bos, ctx=ctx)
    return {k if k.startswith(("ce_", "kl_")) else f"ce_eval_{k}": float(v) for k, v in result.items()}


def evaluate(params: SAEEvalParams, ctx: JobContext) -> dict[str, Any]:
    """Reconstruction metrics on held-out activations and, for causal LMs, CE loss with the SAE spliced in."""
    from mistudio_tui.ml.activations.store import (
        HELD_OUT_FRACTION,
        ActivationStore,
        ShuffledActivationSource,
        held_out_split,
    )
    from mistudio_tui.ml.batches import ConcatenatedSource
    from mistudio_tui.ml.device import pick_device
    from mistudio_tui.ml.sae.evaluate import evaluate_reconstruction
    from mistudio_tui.ml.sae.formats import load_any

    sae_dir = params.sae_dir
    device = pick_device(params.device or "auto")
    ctx.started(str(device))
    sae_file = load_any(sae_dir, device=device)
    sae = sae_file.sae.eval()
    requested = params.tokens
    evaluation: dict[str, Any] = {}
    if params.ground_truth:
        evaluation["ground_truth"] = ground_truth_scores(sae, params.ground_truth, ctx)
    source_spec = params.source
    if sae.cfg.is_transcoder and not source_spec.hook_out:  # an imported transcoder: its file names it
        source_spec = dataclasses.replace(source_spec, hook_out=sae_file.metadata.get("hook_name_out"))
    hook_out = source_spec.hook_out
    if source_spec.dir:
        store = ActivationStore(source_spec.dir)
        hook = source_spec.hook or store.hooks[0]
        if source_spec.held_out:
            rows, where = held_out_split(store, fraction=HELD_OUT_FRACTION)[1], "held_out"
        else:
            rows, where = (0, store.n_tokens), "all_rows"
        n_tokens = min(requested or DEFAULT_EVAL_TOKENS, rows[1] - rows[0])
        hooks = [hook] if not hook_out else [hook, hook_out]
        parts = [ShuffledActivationSource(store, name, seed=0, rows=rows, prefetch=False) for name in hooks]
        source = parts[0] if len(parts) == 1 else ConcatenatedSource(parts)  # a transcoder: [input | target]
        ctx.log(f"reconstruction metrics on {n_tokens:,} {where.replace('_', '-')} rows of {store.folder.name}")
        result = evaluate_reconstruction(sae, source, n_tokens, EVAL_BATCH_SIZE, ctx)
        evaluation.update(result.metrics, source=where)
    info = params.eval
    sequences = CE_EVAL_SEQUENCES
    if requested and info.context_size:
        sequences = max(1, math.ceil(requested / info.context_size))
    ce = ce_loss_metrics(info, sae_dir, params.hook or "", str(device), ctx, sequences, hook_out=hook_out)
    evaluation.update(ce)
    if not evaluation:
        raise ValueError(
            f"nothing to evaluate {sae_dir} on: it has no activation set, and no causal LM with a tokenization"
        )
    resource: dict[str, Any] = {"evaluation": {**params.previous, **evaluation}}
    for key in ("explained_variance", "l0", "dead_fraction"):
        if key in evaluation:
            resource[key] = evaluation[key]
    return {"resource": resource, "summary": {k: v for k, v in evaluation.items() if isinstance(v, (int, float))}}


def ground_truth_scores(sae: Any, path: Path, ctx: JobContext) -> dict[str, Any]:
    """MCC, recovered fraction and mean max |cos| of the SAE's decoder rows against the true features in `path`."""
    from mistudio_tui.ml.sae.ground_truth import load_ground_truth, score_decoder

    score = score_decoder(sae.W_dec, load_ground_truth(path, d_in=sae.d_in))
    ctx.log(
        f"ground truth {path.name}: MCC {score.mcc:.3f}, recovered {score.recovered:.1%} of {score.features} "
        f"true features, mean max |cos| {score.mean_max_cosine:.3f}"
    )
    return {**score.to_dict(), "file": str(path)}


def _hub_sae_folder(repo_id: str, subfolder: str | None, revision: str | None, dest: Path, ctx: JobContext) -> Path:
    """Download the one SAE of a hub repo (or the one in `subfolder`) into `dest`; return its folder."""
    from mistudio_tui.ml.hub import download_repo, find_sae_folders, list_repo_files

    listing = list_repo_files(repo_id, revision=revision)
    folders = find_sae_folders(f.path for f in listing.files)
    if subfolder is not None:
        subfolder = subfolder.strip("/")
        if subfolder not in folders:
            found = ", ".join(repr(f) for f in folders) or "none"
            raise FileNotFoundError(f"hub repo {repo_id} has no SAE in folder {subfolder!r}; SAE folders: {found}")
    elif len(folders) == 1:
        subfolder = folders[0]
    elif not folders:
        raise FileNotFoundError(
            f"hub repo {repo_id} holds no SAE "
            "(SAELens, sparsify, dictionary_learning, Gemma Scope or Llama Scope layout)"
        )
    else:
        raise ValueError(
            f"hub repo {repo_id} holds {len(folders)} SAEs; pick one with --subfolder: {', '.join(folders)}"
        )
    patterns = [f"{subfolder}/*"] if subfolder else [p.path for p in listing.files if "/" not in p.path]
    download_repo(repo_id, dest, revision=revision, allow_patterns=patterns, ctx=ctx)
    return dest / subfolder if subfolder else dest


def _hub_sae_file(repo_id: str, file: str, revision: str | None, dest: Path, ctx: JobContext) -> Path:
    """Download one file of a hub repo into `dest`; return the folder that holds it."""
    from mistudio_tui.ml.hub import download_repo

    download_repo(repo_id, dest, revision=revision, allow_patterns=[file], ctx=ctx)
    return dest / posixpath.dirname(file)


def import_sae(params: SAEImportParams, ctx: JobContext) -> dict[str, Any]:
    """Read an SAE in any supported layout and save it in the SAELens inference form in `out_dir`."""
    from mistudio_tui.ml.sae.formats import load_any, load_sparsity, save_saelens

    out_dir = params.out_dir
    ctx.started("cpu")
    staging = out_dir / DOWNLOAD_DIR
    try:
        if params.hub and params.file:  # one file of a repo (a SAELens release's .pt state dict)
            folder = _hub_sae_file(params.source, params.file, params.revision, staging, ctx)
            origin = f"{params.source}/{params.file}"
        elif params.hub:
            folder = _hub_sae_folder(params.source, params.subfolder, params.revision, staging, ctx)
            origin = "/".join(p for p in (params.source, (params.subfolder or "").strip("/")) if p)
        else:
            folder = Path(params.source)
            if params.subfolder:
                folder = folder / params.subfolder
            origin = str(folder)
        loaded = load_any(
            folder, origin=origin, norm_scaling_factor=params.norm_scaling_factor, catalogued=bool(params.release)
        )
        width = params.model_d_model
        if width and loaded.sae.d_in != width:
            raise ValueError(
                f"the SAE in {folder} reads d_in={loaded.sae.d_in} activations, but the model's width is {width}"
            )
        sparsity = load_sparsity(folder) if loaded.source_format == "saelens" else None
        for key, value in (("release", params.release), ("sae_id", params.sae_id)):  # a SAELens catalogue import
            if value:
                loaded.metadata.setdefault(key, value)
        metadata = {k: v for k, v in loaded.metadata.items() if v is not None}
        if params.hook:
            metadata["hook_name"] = params.hook
        if params.model_name and not metadata.get("model_name"):
            metadata["model_name"] = params.model_name
        sae = loaded.sae.float()
        save_saelens(sae, out_dir, metadata, sparsity=sparsity)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.artifact("sae", out_dir, architecture=sae.architecture, d_in=sae.d_in, d_sae=sae.d_sae)
    ctx.log(f"imported a {loaded.source_format} {sae.architecture} SAE ({sae.d_in} -> {sae.d_sae}) from {folder}")
    return {
        "resource": {
            "architecture": sae.architecture,
            "d_in": sae.d_in,
            "d_sae": sae.d_sae,
            "hook_name": metadata.get("hook_name"),
            "config": {
                "sae": sae.cfg.to_dict(),
                "hook_name_out": metadata.get("hook_name_out"),  # a transcoder's output hook (None for an SAE)
                "import": {
                    "source": params.source,
                    "subfolder": params.subfolder,
                    "hub": params.hub,
                    "format": loaded.source_format,
                    "metadata": metadata,
                },
            },
            "status": "ready",
        },
        "summary": {"format": loaded.source_format, "architecture": sae.architecture, "d_sae": sae.d_sae},
    }
