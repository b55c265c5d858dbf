"""`mistudio models …` and `mistudio activations …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.data_cmd import model_summary
from mistudio_tui.cli.output import emit, format_table
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import ActivationSet, LanguageModel
from mistudio_tui.services import models as svc
from mistudio_tui.studio import Studio

MODEL_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("model_type", "TYPE"),
    ("d_model", "D_MODEL"),
    ("n_layers", "LAYERS"),
    ("n_params", "PARAMS"),
    ("source", "SOURCE"),
]
ACTIVATION_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("model", "MODEL"),
    ("hooks", "HOOKS"),
    ("d_in", "D_IN"),
    ("n_tokens", "TOKENS"),
    ("status", "STATUS"),
]


def model_detail(m: LanguageModel) -> dict[str, Any]:
    data = basic(
        m,
        [
            "id",
            "name",
            "source_type",
            "source",
            "revision",
            "path",
            "dtype",
            "quantization",
            "trust_remote_code",
            "status",
            "model_type",
            "family",
            "d_model",
            "n_layers",
            "n_params",
            "vocab_size",
            "is_causal_lm",
            "error",
        ],
    )
    arch = m.architecture or {}
    data["hook_points"] = [h["name"] for h in arch.get("hook_points", [])]
    data["memory_estimate"] = arch.get("memory_estimate")
    return data


def activation_summary(a: ActivationSet) -> dict[str, Any]:
    data = basic(a, ["id", "name", "origin", "d_in", "dtype", "n_tokens", "context_size", "status", "path", "error"])
    data["model"] = a.model.name if a.model else None
    data["tokenization"] = a.tokenization.name if a.tokenization else None
    data["hooks"] = ",".join(a.hooks or [])
    return data


def activation_detail(a: ActivationSet) -> dict[str, Any]:
    data = activation_summary(a)
    data["manifest"] = a.manifest
    return data


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    md = sub.add_parser("models", help="transformer models", parents=[common])
    verbs = md.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("add", help="register a local model folder or download a hub model", parents=[common])
    p.add_argument("source", help="a folder with config.json, or a hub id (e.g. EleutherAI/pythia-70m)")
    p.add_argument("--name")
    p.add_argument("--revision", help="hub revision (branch, tag or commit)")
    p.add_argument("--dtype", choices=list(svc.DTYPES), default="float32")
    p.add_argument("--quantization", choices=["8bit", "4bit"], help="bitsandbytes quantization (CUDA only)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (unsafe)")
    p.add_argument("--hub", action="store_true", default=None, help="treat SOURCE as a hub id")
    p.set_defaults(func=cmd_add)
    p = verbs.add_parser("hooks", help="the hook points a model offers", parents=[common])
    p.add_argument("ref", metavar="MODEL")
    p.set_defaults(func=cmd_hooks)
    add_list_show_delete(verbs, common, LanguageModel, "model", MODEL_COLUMNS, model_summary, model_detail)

    ac = sub.add_parser("activations", help="activation sets", parents=[common])
    verbs = ac.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("extract", help="run a model over a tokenization and store hook activations", parents=[common])
    p.add_argument("--model", required=True)
    p.add_argument("--tokenization", required=True)
    p.add_argument("--hook", action="append", dest="hooks", help="hook point (repeat for several)")
    p.add_argument("--tokens", type=count_arg("--tokens"), dest="n_tokens", help="how many tokens (e.g. 1M)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--shard-tokens", type=count_arg("--shard-tokens"))
    p.add_argument("--store-dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--keep-bos", action="store_true", help="keep BOS positions")
    p.add_argument("--template", help="extraction template id or name")
    p.add_argument("--name")
    p.set_defaults(func=cmd_extract)
    p = verbs.add_parser("import", help="register activations computed elsewhere (safetensors)", parents=[common])
    p.add_argument("path", help="a .safetensors file holding a [tokens, d_in] tensor, or a folder of shards")
    p.add_argument("--key", help="tensor name inside the file(s)")
    p.add_argument("--name")
    p.set_defaults(func=cmd_import)
    add_list_show_delete(
        verbs,
        common,
        ActivationSet,
        "activation set",
        ACTIVATION_COLUMNS,
        activation_summary,
        activation_detail,
    )


def cmd_add(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.add_model(
        studio,
        args.source,
        name=args.name,
        revision=args.revision,
        dtype=args.dtype,
        quantization=args.quantization,
        trust_remote_code=args.trust_remote_code,
        hub=args.hub,
    )
    run_spec(args, studio, spec, model_summary)


def cmd_hooks(args: argparse.Namespace, studio: Studio) -> None:
    model = resolve(LanguageModel, args.ref)
    hooks = (model.architecture or {}).get("hook_points", [])
    rows = [{"name": h["name"], "module": h.get("module_path"), "kind": h.get("kind")} for h in hooks]
    emit(
        args.json,
        rows,
        lambda: format_table(rows, [("name", "HOOK"), ("module", "MODULE"), ("kind", "KIND")]),
    )


def cmd_extract(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.extract_activations(
        studio,
        args.model,
        args.tokenization,
        hooks=args.hooks,
        n_tokens=args.n_tokens,
        name=args.name,
        template=args.template,
        batch_size=args.batch_size,
        shard_tokens=args.shard_tokens,
        store_dtype=args.store_dtype,
        device=args.device,
        exclude_bos=False if args.keep_bos else None,
    )
    run_spec(args, studio, spec, activation_summary)


def cmd_import(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.import_activations(studio, args.path, key=args.key, name=args.name)
    run_spec(args, studio, spec, activation_summary)
