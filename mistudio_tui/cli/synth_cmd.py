"""`mistudio synth`: a synthetic activation set with known true features, to check a training recipe cheaply."""

from __future__ import annotations

import argparse
from pathlib import Path

from mistudio_tui.cli.common import count_arg
from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.model_cmd import activation_summary
from mistudio_tui.cli.output import CliError, emit
from mistudio_tui.db.models import ActivationSet
from mistudio_tui.services import models as svc
from mistudio_tui.studio import Studio


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "synth",
        help="generate activations from known true features (sae_lens.synthetic) to check an SAE recipe",
        description="Writes an activation set like an imported one, with the true features beside it as "
        "ground_truth.safetensors; train on it, then `mistudio trainings eval RUN` reports how many it recovered.",
        parents=[common],
    )
    p.add_argument("--features", type=int, default=4096, help="true features (default 4096)")
    p.add_argument("--d-in", type=int, default=256, help="activation width (default 256)")
    p.add_argument("--tokens", type=count_arg("--tokens"), default=1_000_000, help="rows (default 1M)")
    p.add_argument(
        "--l0", dest="target_l0", type=float, default=32.0, help="mean true features per row, roughly (default 32)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--hierarchy", dest="hierarchy_roots", type=int, default=0, help="parent features with children (default 0)"
    )
    p.add_argument("--correlation", type=float, default=0.0, help="low-rank firing correlation scale, 0 to 1")
    p.add_argument("--bias", type=float, default=1.0, help="norm of a constant offset on every row (default 1)")
    p.add_argument("--name")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace, studio: Studio) -> None:
    options = {
        name: getattr(args, name)
        for name in ("features", "d_in", "tokens", "target_l0", "seed", "hierarchy_roots", "correlation", "bias")
    }
    try:
        spec = svc.synth_activations(studio, options, name=args.name)
    except ModuleNotFoundError as exc:
        raise CliError(str(exc)) from None
    job = run_job(studio, spec.kind, spec.params, title=spec.title, resource=spec.resource)
    assert spec.resource is not None  # the synthetic activation set's row
    aset = ActivationSet.get_by_id(spec.resource.id)
    synthetic = (aset.manifest or {}).get("synthetic") or {}
    data = {
        **activation_summary(aset),
        "job": job.id,
        "true_l0": synthetic.get("true_l0"),
        "ground_truth": str(Path(aset.path) / synthetic.get("ground_truth", "")),
    }
    emit(
        args.json,
        data,
        lambda: (
            f"synthetic activation set '{aset.name}' (id {aset.id}): {aset.n_tokens:,} rows of {aset.d_in} dims\n"
            f"true L0 {data['true_l0']:.2f} (pick k near it)\n"
            f"ground truth: {data['ground_truth']}"
        ),
    )
