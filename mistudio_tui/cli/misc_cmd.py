"""`mistudio version` and `mistudio home`: what is installed and where the data lives."""

from __future__ import annotations

import argparse

from mistudio_tui import __version__
from mistudio_tui.db.connection import latest_schema_version
from mistudio_tui.studio import Studio


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("version", help="versions and the database schema", parents=[common])
    p.set_defaults(func=cmd_version)


def cmd_version(args: argparse.Namespace, studio: Studio) -> None:
    from mistudio_tui.cli.output import emit

    data = {
        "version": __version__,
        "schema_version": studio.schema_version(),
        "code_schema_version": latest_schema_version(),
        "home": str(studio.paths.home),
        "database": str(studio.paths.db),
    }
    emit(args.json, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items()))
