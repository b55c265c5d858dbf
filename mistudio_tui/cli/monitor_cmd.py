"""`mistudio monitor [--compact] [--inline] [--interval S]`: GPUs, host and running jobs, in a terminal or tmux pane."""

from __future__ import annotations

import argparse
import math

from mistudio_tui.monitor.history import INTERVAL_ENV, monitor_interval


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "monitor",
        help="GPUs, host and running jobs (reads only the database, NVML and psutil)",
        parents=[common],
    )
    p.add_argument("--compact", action="store_true", help="a small view that fits a 40-column tmux pane")
    p.add_argument("--inline", action="store_true", help="draw below the prompt instead of taking the screen")
    p.add_argument(
        "--interval", type=interval_arg, default=None, help=f"seconds between refreshes (default: ${INTERVAL_ENV} or 1)"
    )
    p.set_defaults(func=cmd_monitor, needs_studio=False)


def interval_arg(text: str) -> float:
    """An argparse type for a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--interval {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--interval {text!r} must be a positive number of seconds")
    return value


def cmd_monitor(args: argparse.Namespace, studio: object) -> None:
    from mistudio_tui.config import paths
    from mistudio_tui.db.connection import close_database, open_database
    from mistudio_tui.ui.monitor_app import MonitorApp

    interval = args.interval if args.interval is not None else monitor_interval()
    home = paths().home
    open_database(paths().db)
    try:
        MonitorApp(home, interval, compact=args.compact).run(inline=args.inline)
    finally:
        close_database()
