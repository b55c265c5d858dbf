"""Argument parsing and dispatch; heavy modules (textual, torch) load only for the commands needing them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mistudio_tui import __version__
from mistudio_tui.cli.output import CliError, CliParser, emit, fail

# Modules that add a noun: each has add_parser(subparsers, common_parent).
COMMAND_MODULES = [
    "mistudio_tui.cli.data_cmd",
    "mistudio_tui.cli.model_cmd",
    "mistudio_tui.cli.synth_cmd",
    "mistudio_tui.cli.train_cmd",
    "mistudio_tui.cli.sae_cmd",
    "mistudio_tui.cli.template_cmd",
    "mistudio_tui.cli.sweep_cmd",
    "mistudio_tui.cli.feature_cmd",
    "mistudio_tui.cli.label_cmd",
    "mistudio_tui.cli.jobs_cmd",
    "mistudio_tui.cli.misc_cmd",
    "mistudio_tui.cli.steer_cmd",
    "mistudio_tui.cli.monitor_cmd",
]


def common_parser() -> argparse.ArgumentParser:
    """Options every command accepts, in any position (SUPPRESS so subcommands don't reset them)."""
    common = CliParser(prog="mistudio", add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--home", default=argparse.SUPPRESS, help="data folder (default: $MISTUDIO_HOME)")
    return common


def build_parser() -> argparse.ArgumentParser:
    import importlib

    common = common_parser()
    parser = CliParser(
        prog="mistudio",
        description="miStudio: a terminal studio for mechanistic interpretability with sparse autoencoders. "
        "Without a command it opens the TUI.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mistudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            code = _main(argv)
        except CliError as exc:  # a bad option: argparse's message in one line
            _report(argparse.Namespace(json="--json" in argv), str(exc))
            code = exc.code
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:  # e.g. `mistudio … --json | head`: the reader left; exit quietly as Unix tools do
        _silence_stdout()
        return 0


def _main(argv: list[str]) -> int:
    options, rest = common_parser().parse_known_args(argv)
    if not rest:  # the TUI: skip building the CLI (importing every command) to keep the first frame fast
        home = getattr(options, "home", None)
        if home:
            os.environ["MISTUDIO_HOME"] = os.path.abspath(home)
        return run_tui()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    home = getattr(args, "home", None)
    if home:
        os.environ["MISTUDIO_HOME"] = os.path.abspath(home)
    if args.command is None:
        return run_tui()
    func = getattr(args, "func", None)
    if func is None:
        parser.parse_args([*argv, "--help"])
        return 2
    studio = None
    try:
        if getattr(args, "needs_studio", True):
            from mistudio_tui.studio import Studio

            studio = Studio()
        func(args, studio)
        return 0
    except BrokenPipeError:  # an OSError, but no error of the command's: main exits quietly
        raise
    except (Exception, KeyboardInterrupt) as exc:
        known = one_line_error(exc)
        if known is None:  # a bug: keep its traceback
            raise
        _report(args, _named_by_flag(exc, parser, argv) or known[0])
        return known[1]
    finally:
        if studio is not None:
            studio.close()


def _named_by_flag(exc: BaseException, parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """A refused value the user gave with a flag, named by that flag: `--l1 must be >= 0, got -1.0` rather than
    the config key `l1_coefficient` (None when `exc` names no field, or its value came from elsewhere)."""
    from mistudio_tui.jobs.params import FieldError

    if not isinstance(exc, FieldError) or not exc.field or not str(exc).startswith(exc.field):
        return None
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    for action in _actions(parser):
        if action.dest == exc.field:
            for flag in action.option_strings:
                if flag in given:
                    return flag + str(exc)[len(exc.field) :]
    return None


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every option of `parser` and of its subcommands, at any depth."""
    found = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _actions(sub)
    return found


# What a database failure means for the person at the terminal, by the text of SQLite's error.
DATABASE_MESSAGES = {
    "database is locked": "the database {db} stayed busy (another miStudio process was writing) past the wait; "
    "try again",
    "disk i/o error": "disk I/O error on the database {db}; check the disk (full, removed or failing)",
    "file is not a database": "{db} is not a miStudio database (file is not a database); move it aside or give "
    "another --home",
    "database disk image is malformed": "the database {db} is damaged (disk image is malformed); restore a backup "
    "(mistudio.db.bak-N) or move it aside",
    "readonly database": "the database {db} is read-only; check its permissions",
    "unable to open database file": "cannot open the database {db}; check that its folder exists and is writable",
}


def one_line_error(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of an expected failure; None for a bug. The only such mapping."""
    from peewee import DatabaseError

    from mistudio_tui.db.connection import SchemaTooNew

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, SchemaTooNew):
        return str(exc), 1
    if isinstance(exc, DatabaseError):
        from mistudio_tui.config import paths

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for key, message in DATABASE_MESSAGES.items():
            if key in text.lower():
                return message.format(db=paths().db), 1
        return f"database error: {text}", 1
    if isinstance(exc, (ValueError, LookupError, OSError)):  # OSError covers missing files and permissions
        return str(exc) or type(exc).__name__, 1
    return None


def run_tui() -> int:
    """The TUI; a database it cannot open (not a database, too new, locked) is one line here, as for commands."""
    from mistudio_tui.app import run_app

    try:
        return run_app()
    except (Exception, KeyboardInterrupt) as exc:
        known = one_line_error(exc)
        if known is None:
            raise
        fail(known[0])
        return known[1]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush has nowhere to fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _report(args: argparse.Namespace, message: str) -> None:
    if args.json:
        try:
            emit(True, {"error": message.strip().splitlines()[0] if message.strip() else "error"})
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left; the line on stderr and the exit code still tell
            _silence_stdout()
    fail(message)


if __name__ == "__main__":
    sys.exit(main())
