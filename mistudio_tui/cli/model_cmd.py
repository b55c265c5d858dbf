"""`mistudio models …` and `mistudio activations …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.data_cmd import model_summary
from mistudio_tui.cli.output import CliError, emit, format_table
from mistudio_tui.cli.template_verbs import TemplateCli
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import ActivationSet, ExtractionTemplate, LanguageModel
from mistudio_tui.services import extraction_templates as templates
from mistudio_tui.services import models as svc
from mistudio_tui.studio import Studio
from mistudio_tui.units import format_bytes

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
TEMPLATE_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("star", "★"),
    ("hooks", "HOOKS"),
    ("n_tokens", "TOKENS"),
    ("description", "DESCRIPTION"),
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


def template_summary(t: ExtractionTemplate) -> dict[str, Any]:
    data = basic(t, ["id", "name", "description", "favourite"])
    data["hooks"] = ",".join(t.config.get("hooks") or [])
    data["n_tokens"] = t.config.get("n_tokens")
    return data


def template_detail(t: ExtractionTemplate) -> dict[str, Any]:
    data = basic(t, ["id", "name", "description", "favourite", "created_at", "updated_at"])
    data["config"] = dict(t.config)
    return data


def _extraction_options(p: argparse.ArgumentParser) -> None:
    """The settings an extraction and a template share."""
    p.add_argument("--hook", action="append", dest="hooks", help="hook point (repeat for several)")
    p.add_argument("--tokens", type=count_arg("--tokens"), dest="n_tokens", help="how many tokens (e.g. 1M)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--shard-tokens", type=count_arg("--shard-tokens"))
    p.add_argument("--store-dtype", choices=list(templates.STORE_DTYPES))
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--keep-bos", action="store_true", default=None, help="keep BOS positions")
    p.add_argument("--keep-special", action="store_true", default=None, help="keep special-token positions")


def _extraction_values(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "hooks": args.hooks,
        "n_tokens": args.n_tokens,
        "batch_size": args.batch_size,
        "shard_tokens": args.shard_tokens,
        "store_dtype": args.store_dtype,
        "device": args.device,
        "exclude_bos": False if args.keep_bos else None,
        "exclude_special": False if args.keep_special else None,
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only estimate the memory the weights need (reads config.json) and register nothing",
    )
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
    _extraction_options(p)
    p.add_argument("--template", help="extraction template id or name (flags given override its settings)")
    p.add_argument("--name")
    p.set_defaults(func=cmd_extract)
    p = verbs.add_parser(
        "resume", help="continue an interrupted extraction from its last complete shard", parents=[common]
    )
    p.add_argument("ref", metavar="ACTIVATION_SET", help="id or name")
    p.set_defaults(func=cmd_resume)
    _add_template_parser(verbs, common)
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


def _add_template_parser(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tp = verbs.add_parser("templates", help="saved extraction settings (use with extract --template)", parents=[common])
    tverbs = tp.add_subparsers(dest="template_verb", required=True, metavar="VERB")

    def add_save(tverbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = tverbs.add_parser("save", help="save extraction settings given as flags", parents=[common])
        p.add_argument("name")
        _extraction_options(p)
        p.add_argument("--description", default="")
        p.add_argument("--favourite", action="store_true", default=None, help="list it first")
        p.add_argument("--overwrite", action="store_true", help="replace a template of the same name")
        p.set_defaults(func=cmd_templates_save)

    TEMPLATE_CLI.add_verbs(tverbs, common, add_save)


def _human_template(t: ExtractionTemplate) -> str:
    data = template_detail(t)
    lines = [f"{k:>14}: {v}" for k, v in data.items() if k != "config"]
    lines += [f"{k:>14}: {v}" for k, v in data["config"].items()]
    return "\n".join(lines)


TEMPLATE_CLI = TemplateCli(templates.STORE, TEMPLATE_COLUMNS, template_summary, template_detail, _human_template)


def cmd_templates_save(args: argparse.Namespace, studio: Studio) -> None:
    row = templates.save_template(
        args.name,
        _extraction_values(args),
        description=args.description,
        favourite=args.favourite,
        overwrite=args.overwrite,
    )
    TEMPLATE_CLI.show_saved(args, row, "saved")


def cmd_add(args: argparse.Namespace, studio: Studio) -> None:
    if args.dry_run:
        _dry_run(args)
        return
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


def _dry_run(args: argparse.Namespace) -> None:
    from mistudio_tui.jobs.tasks.models import estimate

    data = estimate(
        args.source,
        dtype=args.dtype,
        quantization=args.quantization,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )

    def human() -> str:
        lines = [
            f"{data['model_type']}: d_model {data['d_model']}, {data['n_layers']} layers, "
            f"{data['n_params']:,} parameters",
            f"weights in {data['dtype']}{' ' + data['quantization'] if data['quantization'] else ''}: "
            f"about {format_bytes(data['memory_estimate'])}",
        ]
        if data["available_memory"] is not None:
            verdict = "fits" if data["fits"] else "does NOT fit"
            lines.append(f"{data['device']}: {format_bytes(data['available_memory'])} available, {verdict}")
        if data["problem"]:
            lines.append(f"refused: {data['problem']}")
        return "\n".join(lines)

    emit(args.json, data, human)
    if data["problem"]:
        raise CliError(data["problem"])


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
        **{k: v for k, v in _extraction_values(args).items() if k not in ("hooks", "n_tokens")},
    )
    run_spec(args, studio, spec, activation_summary)


def cmd_resume(args: argparse.Namespace, studio: Studio) -> None:
    run_spec(args, studio, svc.resume_extraction(studio, args.ref), activation_summary)


def cmd_import(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.import_activations(studio, args.path, key=args.key, name=args.name)
    run_spec(args, studio, spec, activation_summary)
