"""Interop check: SAEs saved by SAELens and sparsify open in miStudio computing exactly what their library computes.

For each layout the original library builds a small SAE with random (non-trivial) weights, computes its latents and
reconstruction on random inputs, and saves it. miStudio imports the folder (`mistudio sae import`, the real job in a
worker; --quick runs the same job code in this process) and exports it (`mistudio sae export`). The original library
then loads the exported SAELens folder (SAELens's `SAE.load_from_disk`; for sparsify also a `SparseCoder` holding
the exported tensors); its outputs, and miStudio's own outputs of the exported SAE, are compared with the reference.
Layouts SAELens's own pretrained loaders read (Gemma Scope, Llama Scope) are compared with those loaders run on
local files.

Needs the benchmark extra (`pip install -e .[bench]`: sae-lens, eai-sparsify). One line per layout:
`BENCH interop_<layout> <max abs difference> abs goal <= 1e-5 ok|short`; exits 1 when any is above the goal.

Usage: python benchmarks/interop.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_line import bench_line

GOAL = 1e-5
Reference = tuple[torch.Tensor, torch.Tensor]  # (latents, reconstruction) on the inputs


def _perturb(module: torch.nn.Module, gen: torch.Generator, scale: float = 0.3) -> None:
    """Random weights away from the initialisation: decoder rows of uneven norm, biases that matter."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dtype.is_floating_point and name != "threshold":
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * scale)
        if hasattr(module, "W_dec"):
            rows = torch.rand(module.W_dec.shape[0], 1, generator=gen) * 0.6 + 0.1  # norms ~0.1-0.7
            module.W_dec.mul_(rows / module.W_dec.norm(dim=1, keepdim=True))


def _saelens_reference(sae: Any, x: torch.Tensor) -> Reference:
    with torch.no_grad():
        return sae.encode(x).detach().clone(), sae(x).detach().clone()


# --- layouts: each returns (folder to import, reference outputs) --------------------------------------------------
def _inference(arch: str, d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path, **kw: Any):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    classes = {"standard": (StandardSAE, StandardSAEConfig), "topk": (TopKSAE, TopKSAEConfig)}
    classes["jumprelu"] = (JumpReLUSAE, JumpReLUSAEConfig)
    sae_cls, cfg_cls = classes[arch]
    cfg = cfg_cls(d_in=d_in, d_sae=d_sae, **({"k": k} if arch == "topk" else {}), **kw)
    sae = sae_cls(cfg)
    _perturb(sae, gen)
    if arch == "jumprelu":
        with torch.no_grad():
            sae.threshold.copy_(torch.rand(d_sae, generator=gen) * 0.5)
    sae.save_model(out)
    return out, _saelens_reference(sae, x)


def _training(arch: str, d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path, **kw: Any):
    """TrainingSAE.save_model: the layout of every SAELens training checkpoint and of its hub uploader."""
    import sae_lens as sl

    classes = {
        "standard": (sl.StandardTrainingSAE, sl.StandardTrainingSAEConfig, {}),
        "topk": (sl.TopKTrainingSAE, sl.TopKTrainingSAEConfig, {"k": k}),
        "jumprelu": (sl.JumpReLUTrainingSAE, sl.JumpReLUTrainingSAEConfig, {}),
        "batchtopk": (sl.BatchTopKTrainingSAE, sl.BatchTopKTrainingSAEConfig, {"k": float(k)}),
    }
    sae_cls, cfg_cls, extra = classes[arch]
    sae = sae_cls(cfg_cls(d_in=d_in, d_sae=d_sae, **extra, **kw))
    _perturb(sae, gen)
    scale = None
    with torch.no_grad():
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=gen) * 0.5)
        if arch == "batchtopk":
            sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)
    if kw.get("normalize_activations") == "expected_average_only_in":  # a mid-run checkpoint: the trainer's scaler
        scale = 1.7
        out.mkdir(parents=True, exist_ok=True)
        (out / "activation_scaler.json").write_text(json.dumps({"scaling_factor": scale, "has_whitening": False}))
    sae.save_model(out)
    if arch == "batchtopk" or scale is not None:
        # the library's own inference conversion: fold the scale as its trainer does, save_inference_model, reload
        final = copy.deepcopy(sae)
        if scale is not None:
            final.fold_activation_norm_scaling_factor(scale)
        final.save_inference_model(out.parent / f"{out.name}-library-inference")
        return out, _saelens_reference(sl.SAE.load_from_disk(out.parent / f"{out.name}-library-inference"), x)
    return out, _saelens_reference(sae, x)


def _matryoshka(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """A Matryoshka BatchTopK SAE's inference save (SAELens writes it as JumpReLU)."""
    import sae_lens as sl

    cfg = sl.MatryoshkaBatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=float(k), matryoshka_widths=[d_sae // 4])
    sae = sl.MatryoshkaBatchTopKTrainingSAE(cfg)
    _perturb(sae, gen)
    sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)
    sae.save_inference_model(out)
    return out, _saelens_reference(sl.SAE.load_from_disk(out), x)


def _transcoder(kind: str, d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """A SAELens transcoder's save (input hook -> output hook of another width), `kind` one of its classes."""
    import sae_lens.saes.transcoder as tc
    from sae_lens.saes.sae import SAEMetadata

    cls, cfg_cls = getattr(tc, kind), getattr(tc, f"{kind}Config")
    metadata = SAEMetadata(hook_name="blocks.0.ln2.hook_normalized", hook_name_out="blocks.0.hook_mlp_out")
    sae = cls(cfg_cls(d_in=d_in, d_sae=d_sae, d_out=d_in // 2, apply_b_dec_to_input=False, metadata=metadata))
    _perturb(sae, gen)
    with torch.no_grad():
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(d_sae, generator=gen) * 0.5)
        if hasattr(sae, "W_skip"):
            sae.W_skip.copy_(torch.randn(sae.W_skip.shape, generator=gen) * 0.3)
    sae.save_model(out)
    return out, _saelens_reference(sae, x)


def _sparsify(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    from sparsify import SparseCoder, SparseCoderConfig

    coder = SparseCoder(d_in, SparseCoderConfig(k=k, num_latents=d_sae))
    _perturb(coder, gen)
    coder.save_to_disk(out)
    return out, _sparsify_reference(coder, x)


def _sparsify_transcoder(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """sparsify's skip-transcoder (`transcode`, `skip_connection`): no b_dec subtracted, a linear skip added."""
    from sparsify import SparseCoder, SparseCoderConfig

    coder = SparseCoder(d_in, SparseCoderConfig(k=k, num_latents=d_sae, transcode=True, skip_connection=True))
    _perturb(coder, gen)
    with torch.no_grad():
        coder.W_skip.copy_(torch.randn(coder.W_skip.shape, generator=gen) * 0.3)
    coder.save_to_disk(out)
    return out, _sparsify_reference(coder, x)


def _sparsify_reference(coder: Any, x: torch.Tensor) -> Reference:
    with torch.no_grad():
        acts, index, _ = coder.encode(x)
        latents = torch.zeros(x.shape[0], coder.num_latents).scatter(-1, index, acts)
        recon = coder.decode(acts, index)
        if coder.W_skip is not None:
            recon = recon + x @ coder.W_skip.mT
        return latents, recon


def _jumprelu_arrays(d_in: int, d_sae: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random JumpReLU weights under SAELens's names, thresholds in [0, 0.5)."""
    return {
        "W_enc": torch.randn(d_in, d_sae, generator=gen),
        "W_dec": torch.randn(d_sae, d_in, generator=gen) * 0.3,
        "b_enc": torch.randn(d_sae, generator=gen) * 0.3,
        "b_dec": torch.randn(d_in, generator=gen),
        "threshold": torch.rand(d_sae, generator=gen) * 0.5,
    }


def _gemma_scope(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """Gemma Scope's params.npz, read by SAELens's gemma_2 loader (its hub download served from local files)."""
    from sae_lens.loading import pretrained_sae_loaders as loaders

    folder = out / "layer_3" / "width_16k" / "average_l0_20"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{name: a.numpy() for name, a in _jumprelu_arrays(d_in, d_sae, gen).items()})
    repo, sub = "google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_20"
    with _local_hub(loaders, out):
        cfg, state, _ = loaders.gemma_2_sae_huggingface_loader(repo, sub, cfg_overrides={"d_in": d_in, "d_sae": d_sae})
    return folder, _saelens_reference(_saelens_from(cfg, state), x)


def _gemma_scope_2(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """Gemma Scope 2's params.safetensors + config.json, read by SAELens's gemma_3 loader."""
    from sae_lens.loading import pretrained_sae_loaders as loaders
    from safetensors import safe_open
    from safetensors.torch import save_file

    repo, sub = "google/gemma-scope-2-1b-pt", "resid_post/layer_3_width_16k_l0_small"
    folder = out / sub
    folder.mkdir(parents=True)
    arrays = _jumprelu_arrays(d_in, d_sae, gen)
    save_file({name.replace("W_", "w_"): a for name, a in arrays.items()}, str(folder / "params.safetensors"))
    config = {"architecture": "jump_relu", "model_name": "gemma-v3-1b-pt", "hf_hook_point_in": "model.layers.3.output"}
    (folder / "config.json").write_text(json.dumps(config))

    def shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        with safe_open(str(out / filename), framework="pt") as f:
            return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118

    saved = loaders.get_safetensors_tensor_shapes
    loaders.get_safetensors_tensor_shapes = shapes
    try:
        with _local_hub(loaders, out):
            cfg, state, _ = loaders.gemma_3_sae_huggingface_loader(repo, sub)
    finally:
        loaders.get_safetensors_tensor_shapes = saved
    return folder, _saelens_reference(_saelens_from(cfg, state), x)


def _llama_scope(d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """Llama Scope's hyperparams.json + checkpoints/final.safetensors, read by SAELens's llama_scope loader."""
    from sae_lens.loading import pretrained_sae_loaders as loaders
    from safetensors.torch import save_file

    folder = out / "Llama3_1-8B-Base-L3R-8x"
    (folder / "checkpoints").mkdir(parents=True)
    raw = {
        "encoder.weight": torch.randn(d_sae, d_in, generator=gen),
        "encoder.bias": torch.randn(d_sae, generator=gen) * 0.3,
        "decoder.weight": torch.randn(d_in, d_sae, generator=gen) * 0.3,
        "decoder.bias": torch.randn(d_in, generator=gen),
    }
    save_file(raw, str(folder / "checkpoints" / "final.safetensors"))
    mean_norm = 3.0
    hyper = {"d_model": d_in, "d_sae": d_sae, "hook_point_in": "blocks.3.hook_resid_post", "jump_relu_threshold": 0.2}
    hyper.update(hook_point_out="blocks.3.hook_resid_post", dataset_average_activation_norm={"in": mean_norm})
    (folder / "hyperparams.json").write_text(json.dumps(hyper))
    with _local_hub(loaders, out):
        cfg, state, _ = loaders.llama_scope_sae_huggingface_loader(
            "fnlp/Llama3_1-8B-Base-LXR-8x", folder.name, cfg_overrides={"dtype": "float32"}
        )
    sae = _saelens_from(cfg, state)
    sae.fold_activation_norm_scaling_factor(math.sqrt(d_in) / mean_norm)  # what from_pretrained does next
    return folder, _saelens_reference(sae, x)


def _state_file(loader: str, d_in: int, d_sae: int, k: int, gen: torch.Generator, x: torch.Tensor, out: Path):
    """A single .pt state dict (Goodfire, DeepSeek R1, Qwen Scope), read by SAELens's loader of that name."""
    from sae_lens.loading import pretrained_sae_loaders as loaders

    linear = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")  # nn.Linear layouts
    repo, file, names = {
        "goodfire": (
            "Goodfire/Llama-3.1-8B-Instruct-SAE-l19",
            "Llama-3.1-8B-Instruct-SAE-l19.pth",
            tuple(n.replace("coder.", "coder_linear.") for n in linear),
        ),
        "deepseek_r1": (
            "qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19",
            "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt",
            linear,
        ),
        "qwen_scope": (
            f"Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_{k}",
            "layer3.sae.pt",
            ("W_enc", "b_enc", "W_dec", "b_dec"),
        ),
    }[loader]
    state = {
        names[0]: torch.randn(d_sae, d_in, generator=gen),
        names[1]: torch.randn(d_sae, generator=gen) * 0.3,
        names[2]: torch.randn(d_in, d_sae, generator=gen) * 0.3,
        names[3]: torch.randn(d_in, generator=gen),
    }
    folder = out / repo
    folder.mkdir(parents=True)
    torch.save(state, folder / file)
    load = getattr(loaders, f"{loader}_sae_huggingface_loader", None) or loaders.get_goodfire_huggingface_loader
    overrides = {"d_in": d_in, "d_sae": d_sae, "dtype": "float32"}
    with _local_hub(loaders, out, repo):
        cfg, loaded, _ = load(repo, file, cfg_overrides=overrides)
    return folder, _saelens_reference(_saelens_from(cfg, loaded), x)  # the folder's path carries the repo name


@contextlib.contextmanager
def _local_hub(loaders: Any, root: Path, repo: str = ""):
    """Serve the loaders' hf_hub_download from `root` (or `root`/`repo`) (no network)."""

    def download(repo_id: str, filename: str, subfolder: str | None = None, **_: Any) -> str:
        return str(root / repo / (f"{subfolder}/{filename}" if subfolder else filename))

    saved = loaders.hf_hub_download
    loaders.hf_hub_download = download
    try:
        yield
    finally:
        loaders.hf_hub_download = saved


def _saelens_from(cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> Any:
    """An SAE from a loader's (config, state dict), built as SAE.from_pretrained builds it."""
    from sae_lens import SAE
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    cfg = handle_config_defaulting(cfg)
    sae_cfg = SAE.get_sae_config_class_for_architecture(cfg["architecture"]).from_dict(cfg)
    sae = SAE.get_sae_class_for_architecture(sae_cfg.architecture())(sae_cfg)
    sae.load_state_dict(state, assign=True)
    return sae.to(dtype=torch.float32)


def layouts() -> dict[str, Callable[..., tuple[Path, Reference]]]:
    def bind(fn: Callable[..., Any], *args: Any, **kw: Any) -> Callable[..., Any]:
        return lambda d_in, d_sae, k, gen, x, out: fn(*args, d_in, d_sae, k, gen, x, out, **kw)

    return {
        "saelens_standard": bind(_inference, "standard"),
        "saelens_standard_no_b_dec_input": bind(_inference, "standard", apply_b_dec_to_input=False),
        "saelens_topk": bind(_inference, "topk"),
        "saelens_topk_rescaled": bind(_inference, "topk", rescale_acts_by_decoder_norm=True),
        "saelens_jumprelu": bind(_inference, "jumprelu"),
        "saelens_matryoshka_batchtopk": _matryoshka,
        "saelens_train_standard": bind(_training, "standard"),
        "saelens_train_topk": bind(_training, "topk"),  # rescale_acts_by_decoder_norm: true by default
        "saelens_train_topk_scaled": bind(_training, "topk", normalize_activations="expected_average_only_in"),
        "saelens_train_jumprelu": bind(_training, "jumprelu"),
        "saelens_train_batchtopk": bind(_training, "batchtopk"),
        "saelens_transcoder": bind(_transcoder, "Transcoder"),
        "saelens_skip_transcoder": bind(_transcoder, "SkipTranscoder"),
        "saelens_jumprelu_transcoder": bind(_transcoder, "JumpReLUTranscoder"),
        "sparsify": _sparsify,
        "sparsify_skip_transcoder": _sparsify_transcoder,
        "gemma_scope": _gemma_scope,
        "gemma_scope_2": _gemma_scope_2,
        "llama_scope": _llama_scope,
        "goodfire": bind(_state_file, "goodfire"),
        "deepseek_r1": bind(_state_file, "deepseek_r1"),
        "qwen_scope": bind(_state_file, "qwen_scope"),
    }


# --- miStudio: import, export, and the library's reproduction ----------------------------------------------------
def _cli(*argv: str) -> dict[str, Any]:
    from mistudio_tui.cli.main import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*argv, "--json"])
    data = json.loads(buffer.getvalue() or "{}")
    if code != 0:
        raise RuntimeError(f"mistudio {' '.join(argv)} failed: {data.get('error')}")
    return data


def _import_export(source: Path, name: str, dest: Path, via_cli: bool) -> None:
    """`mistudio sae import` + `mistudio sae export`; --quick runs the import job's code in this process instead of a
    worker (the files are the same: export copies the job's output)."""
    if via_cli:
        _cli("sae", "import", str(source), "--name", name)
        _cli("sae", "export", name, str(dest))
        return
    import shutil

    from mistudio_tui.jobs.context import LocalContext
    from mistudio_tui.jobs.kinds.sae import SAEImportParams
    from mistudio_tui.jobs.tasks.sae import import_sae
    from mistudio_tui.services.sae_io import EXPORT_FILES

    out = dest.parent / f"{name}-job"
    import_sae(SAEImportParams(source=str(source), out_dir=out), LocalContext())
    dest.mkdir(parents=True)
    for file in EXPORT_FILES:
        if (out / file).is_file():
            shutil.copy2(out / file, dest / file)


def _reproduce(layout: str, exported: Path, x: torch.Tensor, coder_like: Any) -> list[Reference]:
    """Outputs of the exported SAE as the original library computes them, and as miStudio computes them."""
    from sae_lens import SAE

    from mistudio_tui.ml.sae.formats import load_any

    ours = load_any(exported).sae.eval()
    with torch.no_grad():
        outputs = [(ours.encode(x), ours(x))]
    # SAELens has no TopK transcoder class: the exported sparsify transcoder is reproduced by sparsify alone
    if layout != "sparsify_skip_transcoder":
        outputs.append(_saelens_reference(SAE.load_from_disk(exported), x))
    if layout.startswith("sparsify"):  # sparsify itself, holding the exported tensors
        from safetensors.torch import load_file

        tensors = load_file(str(exported / "sae_weights.safetensors"))
        coder = copy.deepcopy(coder_like)
        with torch.no_grad():
            coder.encoder.weight.copy_(tensors["W_enc"].T)
            coder.encoder.bias.copy_(tensors["b_enc"])
            coder.W_dec.copy_(tensors["W_dec"])
            coder.b_dec.copy_(tensors["b_dec"])
            if coder.W_skip is not None:
                coder.W_skip.copy_(tensors["W_skip"])
        outputs.append(_sparsify_reference(coder, x))
    return outputs


def run(quick: bool) -> int:
    torch.manual_seed(0)
    d_in, d_sae, k, rows = (16, 64, 4, 64) if quick else (64, 512, 16, 1024)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="mistudio-interop-") as tmp:
        root = Path(tmp)
        os.environ["MISTUDIO_HOME"] = str(root / "home")
        for index, (layout, build) in enumerate(layouts().items()):
            gen = torch.Generator().manual_seed(index)
            x = torch.randn(rows, d_in, generator=gen) * 2
            source, (latents, recon) = build(d_in, d_sae, k, gen, x, root / "src" / layout)
            coder = None
            if layout.startswith("sparsify"):
                from sparsify import SparseCoder

                coder = SparseCoder.load_from_disk(source)
            diff = 0.0
            try:
                _import_export(source, layout, root / "exported" / layout, via_cli=not quick)
                for got_latents, got_recon in _reproduce(layout, root / "exported" / layout, x, coder):
                    diff = max(diff, float((got_latents - latents).abs().max()), float((got_recon - recon).abs().max()))
            except Exception as exc:  # a refused or broken import is a failed layout, not the end of the check
                print(f"interop_{layout}: {type(exc).__name__}: {exc}", file=sys.stderr)
                diff = math.inf
            line = bench_line(f"interop_{layout}", diff, "abs", "<=", GOAL)
            failures += line.endswith("short")
            print(line, flush=True)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small SAEs and few inputs (under a minute)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    return run(args.quick)


if __name__ == "__main__":
    sys.exit(main())
