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
        from mistudio_tui.app import run_app

        return run_app()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    home = getattr(args, "home", None)
    if home:
        os.environ["MISTUDIO_HOME"] = os.path.abspath(home)
    if args.command is None:
        from mistudio_tui.app import run_app

        return run_app()
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
    except CliError as exc:
        _report(args, str(exc))
        return exc.code
    except (ValueError, FileNotFoundError, LookupError, PermissionError, OSError) as exc:
        _report(args, str(exc) or type(exc).__name__)
        return 1
    except KeyboardInterrupt:
        _report(args, "interrupted")
        return 130
    finally:
        if studio is not None:
            studio.close()


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
