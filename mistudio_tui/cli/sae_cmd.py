"""`mistudio sae import …`, `mistudio sae releases` and `mistudio sae export …`."""

from __future__ import annotations

import argparse

from mistudio_tui.cli.common import run_spec
from mistudio_tui.cli.output import emit, format_table
from mistudio_tui.cli.train_cmd import training_summary
from mistudio_tui.services import sae_io, sae_releases
from mistudio_tui.studio import Studio


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sae", help="import SAEs from other tools, export them in the SAELens layout", parents=[common])
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    imp = verbs.add_parser(
        "import",
        help="register an SAE (SAELens, sparsify, dictionary_learning, Gemma Scope, Llama Scope) from a folder, "
        "a hub repo, or a SAELens release",
        parents=[common],
    )
    imp.add_argument(
        "source",
        metavar="PATH_OR_HUB_REPO_OR_RELEASE",
        help="a local SAE folder, a hub repo id owner/name, or a release",
    )
    imp.add_argument(
        "sae_id",
        nargs="?",
        metavar="SAE_ID",
        help="with a SAELens release name: the SAE of that release (needs sae-lens)",
    )
    imp.add_argument("--name", help="name of the imported SAE")
    imp.add_argument("--model", help="the model (id or name) whose activations the SAE reads")
    imp.add_argument("--hook", help="hook point the SAE reads (default: what its files say)")
    imp.add_argument("--subfolder", help="which SAE folder of a repo or folder holding several")
    imp.add_argument("--revision", help="hub revision (branch, tag or commit)")
    imp.set_defaults(func=cmd_import)

    rel = verbs.add_parser(
        "releases", help="list SAELens's pretrained SAE releases (needs sae-lens installed)", parents=[common]
    )
    rel.add_argument("--model", help="only releases whose model name contains this")
    rel.set_defaults(func=cmd_releases, needs_studio=False)

    exp = verbs.add_parser("export", help="write an SAE in the SAELens layout", parents=[common])
    exp.add_argument("ref", metavar="RUN", help="training id or name")
    exp.add_argument("dest", metavar="PATH", help="a new or empty folder")
    exp.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace, studio: Studio) -> None:
    spec = sae_io.import_sae(
        studio,
        args.source,
        name=args.name,
        model=args.model,
        hook=args.hook,
        subfolder=args.subfolder,
        revision=args.revision,
        sae_id=args.sae_id,
    )
    run_spec(args, studio, spec, training_summary)


def cmd_export(args: argparse.Namespace, studio: Studio) -> None:
    folder = sae_io.export_sae(args.ref, args.dest)
    files = sorted(p.name for p in folder.iterdir())
    data = {"training": args.ref, "path": str(folder), "files": files}
    emit(args.json, data, f"exported to {folder}: {', '.join(files)}")


def cmd_releases(args: argparse.Namespace, studio: Studio | None) -> None:
    releases = [r.to_dict() for r in sae_releases.list_releases(args.model)]
    columns = [("release", "RELEASE"), ("model", "MODEL"), ("saes", "SAES"), ("layout", "LAYOUT"), ("repo_id", "REPO")]
    emit(args.json, releases, lambda: format_table(releases, columns))
