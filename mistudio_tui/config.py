"""Paths and settings: everything comes from MISTUDIO_* environment variables or defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SUBDIRS = ("datasets", "tokenizations", "models", "activations", "saes", "features", "logs", "templates")


def default_home() -> Path:
    """The data folder: $MISTUDIO_HOME, else $XDG_DATA_HOME/mistudio, else ~/.local/share/mistudio."""
    env = os.environ.get("MISTUDIO_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "mistudio"


def config_dir() -> Path:
    """Where user settings and secrets live: $MISTUDIO_CONFIG_DIR, else $XDG_CONFIG_HOME/mistudio."""
    env = os.environ.get("MISTUDIO_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "mistudio"


@dataclass(frozen=True)
class Paths:
    """The storage layout under one home folder."""

    home: Path

    @property
    def db(self) -> Path:
        return self.home / "mistudio.db"

    def dir(self, kind: str) -> Path:
        """The folder for one kind of artifact (datasets, models, saes, ...)."""
        if kind not in SUBDIRS:
            raise ValueError(f"unknown storage folder {kind!r}; expected one of {', '.join(SUBDIRS)}")
        return self.home / kind

    def ensure(self) -> Paths:
        """Create the home (readable by its owner only: it holds the labels, logs and settings) and its folders."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        return self

    def job_log(self, job_id: int) -> Path:
        return self.home / "logs" / f"job-{job_id}.log"


def paths(home: Path | str | None = None) -> Paths:
    """The Paths for `home` (default: the configured home)."""
    return Paths(Path(home) if home is not None else default_home())


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment, with a clear error when malformed."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    """A float setting from the environment, with a clear error when malformed."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
