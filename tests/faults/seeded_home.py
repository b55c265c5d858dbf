"""Rows for fault tests, written straight into a home's database (no jobs run): an SAE with a feature set and a
ready activation set that a training can be configured on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mistudio_tui.db.connection import open_database
from mistudio_tui.db.models import ActivationSet, Feature, FeatureSet, Training

D_SAE = 64


def seed(home: Path) -> FeatureSet:
    """Training "sae" (completed), feature set "fs" of D_SAE features, activation set "acts" (hook "h", d_in 8)."""
    open_database(home / "mistudio.db")
    training = Training.create(name="sae", d_in=8, d_sae=D_SAE, status="completed")
    fset = FeatureSet.create(name="fs", training=training, d_sae=D_SAE, status="ready")
    Feature.insert_many([{"feature_set": fset, "index": i} for i in range(D_SAE)]).execute()
    ActivationSet.create(name="acts", hooks=["h"], d_in=8, status="ready", n_tokens=1000)
    return fset


def cli(home: Path, *argv: str) -> subprocess.Popen:
    """`mistudio ARGV` started as its own process on `home` (output captured)."""
    code = "import sys; from mistudio_tui.cli.main import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--home", str(home), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
