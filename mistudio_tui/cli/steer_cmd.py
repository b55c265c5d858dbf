"""`mistudio steer …` (normal vs steered completions, presets) and `mistudio analyze …` (ablation, maps, co-occurrence).

The model work runs in the inference worker (`InferenceSession`), the same code path the TUI uses: the CLI process
stays torch-free like every front end, and the worker's warnings go to logs/inference.log, not the terminal.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, int_arg
from mistudio_tui.cli.output import CliError, emit, format_table, warn
from mistudio_tui.db.models import SteeringPreset
from mistudio_tui.services import steering as svc
from mistudio_tui.services.features import not_firing
from mistudio_tui.studio import Studio

PRESET_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("training", "TRAINING"),
    ("features", "FEATURES"),
    ("strengths", "STRENGTHS"),
    ("method", "METHOD"),
    ("prompt", "PROMPT"),
]


def _steering_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--training", help="training (SAE) id or name")
    p.add_argument("--feature", type=int_arg(0), action="append", default=[], help="feature index (repeatable)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--strength",
        type=float,
        action="append",
        default=[],
        help="strength in units of the feature's max activation; several make a sweep",
    )
    size.add_argument(
        "--coefficient",
        type=float,
        action="append",
        default=[],
        help="absolute coefficient on the decoder direction (as SAELens steers); several make a sweep",
    )
    p.add_argument("--prompt", help="text to continue")
    p.add_argument(
        "--max-tokens", type=int_arg(1, svc.MAX_NEW_TOKENS), default=32, help="tokens to generate (default 32)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=svc.METHODS, default="add")
    p.add_argument("--positions", choices=svc.POSITIONS, default="all")
    p.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    p.add_argument("--top-p", type=float, default=1.0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("steer", help="steer generation with SAE features; presets", parents=[common])
    _steering_options(st)
    st.add_argument("--preset", help="start from a saved preset (options given here override it)")
    st.add_argument("--export", help="also write the comparison to this file (.json or text)")
    st.add_argument("--device", default="auto")
    st.set_defaults(func=cmd_steer)
    verbs = st.add_subparsers(dest="verb", metavar="VERB")
    presets = verbs.add_parser("presets", help="saved steering configurations", parents=[common])
    pverbs = presets.add_subparsers(dest="preset_verb", required=True, metavar="VERB")
    add_list_show_delete(pverbs, common, SteeringPreset, "steering preset", PRESET_COLUMNS, svc.preset_summary)
    p = pverbs.add_parser("save", help="save a steering configuration", parents=[common])
    p.add_argument("name")
    _steering_options(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_preset_save)

    an = sub.add_parser(
        "analyze", help="feature ablation, decoder map, co-occurrence, similar features", parents=[common]
    )
    averbs = an.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = averbs.add_parser(
        "ablate", help="zero or clamp features on a text: loss change, moved logits", parents=[common]
    )
    p.add_argument("--training", required=True)
    p.add_argument("--feature", type=int_arg(0), action="append", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--mode", choices=("zero", "clamp"), default="zero")
    p.add_argument("--value", type=float, help="the clamp value (in activation units)")
    p.add_argument("--top", type=int_arg(1), default=10)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_ablate)
    p = averbs.add_parser("map", help="2-D map of the decoder directions (UMAP or PCA)", parents=[common])
    p.add_argument("--training", required=True)
    p.add_argument("--method", choices=("auto", "umap", "pca"), default="auto")
    p.add_argument("--out", help="write the coordinates to this JSON file")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_map)
    p = averbs.add_parser("cooccurrence", help="which features fire together on texts", parents=[common])
    p.add_argument("--training", required=True)
    p.add_argument("--feature", type=int_arg(0), action="append", required=True)
    p.add_argument("--text", action="append", required=True, help="text to scan (repeatable)")
    p.add_argument("--top", type=int_arg(1), default=10)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_cooccurrence)
    p = averbs.add_parser("activations", help="a feature's activation on each token of a text", parents=[common])
    p.add_argument("--training", required=True)
    p.add_argument("--feature", type=int_arg(0), required=True)
    p.add_argument("--text", required=True, help="the text to test")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_activations)
    p = averbs.add_parser("similar", help="features with the closest decoder directions", parents=[common])
    p.add_argument("--training", required=True)
    p.add_argument("--feature", type=int_arg(0), required=True)
    p.add_argument("--top", type=int_arg(1), default=10)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_similar)


@contextmanager
def _session(studio: Studio) -> Iterator[Any]:
    from mistudio_tui.inference.session import InferenceError

    try:
        yield studio.inference  # closed with the studio when the command ends
    except InferenceError as exc:
        raise CliError(str(exc)) from None


def _request(args: argparse.Namespace, base: svc.SteeringRequest | None = None) -> svc.SteeringRequest:
    """The request from the options, over a preset's when one is given."""
    if base is None and not args.training:
        raise CliError("give --training (an SAE training id or name) or --preset")
    training = svc.steerable_training(args.training or base.training_id)  # type: ignore[union-attr]
    features = args.feature or (base.features if base else [])
    strengths = args.strength or args.coefficient or (base.strengths if base else [])
    if args.coefficient:
        units = "absolute"
    elif args.strength or base is None:
        units = "max"
    else:
        units = base.units
    prompt = args.prompt if args.prompt is not None else (base.prompt if base else "")
    defaults = {"max_tokens": 32, "seed": 0, "method": "add", "positions": "all", "temperature": 1.0, "top_p": 1.0}
    chosen = {k: getattr(args, k) for k in defaults}
    if base is not None:
        chosen = {k: (v if v != defaults[k] else getattr(base, k)) for k, v in chosen.items()}
    request = svc.SteeringRequest(
        training_id=training.id, features=features, strengths=strengths, prompt=prompt, units=units, **chosen
    )
    svc.check_features(training, features)  # from the row's d_sae, before the worker loads torch
    return request


def cmd_steer(args: argparse.Namespace, studio: Studio) -> None:
    base = svc.load_preset(args.preset) if args.preset else None
    request = _request(args, base)
    if not request.prompt:
        raise CliError("give --prompt TEXT to continue")
    for line in request.warnings():
        warn(line)
    with _session(studio) as session:
        result = session.call("generate", timeout=None, device=args.device, **request.params())
    for line in svc.scale_warnings(result):
        warn(line)
    if args.export:
        svc.export_comparison(args.export, request, result)
    data = {"prompt": request.prompt, **svc.comparison_json(request, result)}
    emit(args.json, data, lambda: svc.comparison_text(request, result).rstrip("\n"))


def cmd_preset_save(args: argparse.Namespace, studio: Studio) -> None:
    request = _request(args)
    preset = svc.save_preset(args.name, request, overwrite=args.overwrite)
    data = svc.preset_summary(preset)
    emit(args.json, data, f"saved steering preset {preset.name!r} (id {preset.id})")


def _call(studio: Studio, op: str, args: argparse.Namespace, **params: Any) -> Any:
    training = svc.steerable_training(args.training)
    features = params.get("features") or ([params["feature"]] if "feature" in params else [])
    svc.check_features(training, features)  # from the row's d_sae, before the worker loads torch
    with _session(studio) as session:
        return session.call(op, timeout=None, training_id=training.id, device=args.device, **params)


def cmd_ablate(args: argparse.Namespace, studio: Studio) -> None:
    if args.mode == "clamp" and args.value is None:
        raise CliError("--mode clamp needs --value")
    result = _call(
        studio, "ablate", args, text=args.text, features=args.feature, mode=args.mode, value=args.value, top=args.top
    )

    def human() -> str:
        lines = [
            f"loss {result['loss_clean']:.4f} -> {result['loss_ablated']:.4f} ({result['loss_delta']:+.4f}); "
            f"features active on {result['n_active']} of {len(result['tokens'])} tokens",
            "promoted:   " + ", ".join(f"{tok!r} {d:+.3f}" for tok, _, d in result["promoted"]),
            "suppressed: " + ", ".join(f"{tok!r} {d:+.3f}" for tok, _, d in result["suppressed"]),
        ]
        return "\n".join(lines)

    emit(args.json, result, human)


def cmd_map(args: argparse.Namespace, studio: Studio) -> None:
    result = _call(studio, "decoder_map", args, method=args.method)
    if args.out:
        Path(args.out).expanduser().write_text(json.dumps(result), encoding="utf-8")
    emit(args.json, result, lambda: _map_summary(result, args.out))


def _map_summary(result: dict[str, Any], out: str | None) -> str:
    coords = result["coords"]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    where = f"; written to {out}" if out else "; use --out FILE or --json for the coordinates"
    return (
        f"{len(coords)} features mapped by {result['method']}: x {min(xs):.3g}..{max(xs):.3g}, "
        f"y {min(ys):.3g}..{max(ys):.3g}{where}"
    )


def cmd_cooccurrence(args: argparse.Namespace, studio: Studio) -> None:
    result = _call(studio, "cooccurrence", args, texts=args.text, features=args.feature, top=args.top)

    def human() -> str:
        feats = result["features"]
        rows = [
            {"feature": f, "fired": result["fired"][i], **{str(g): result["counts"][i][j] for j, g in enumerate(feats)}}
            for i, f in enumerate(feats)
        ]
        columns = [("feature", "FEATURE"), ("fired", "FIRED")] + [(str(g), str(g)) for g in feats]
        return f"{result['tokens_seen']} tokens; tokens where both fire:\n" + format_table(rows, columns)

    emit(args.json, result, human)


def cmd_activations(args: argparse.Namespace, studio: Studio) -> None:
    result = _call(studio, "feature_activations", args, text=args.text, features=[args.feature])
    values = result["activations"].get(args.feature, result["activations"].get(str(args.feature), []))
    fires = any(v > 0 for v in values)
    data = {"feature": args.feature, "tokens": result["tokens"], "activations": values, "fires": fires}
    if not fires:
        data["note"] = not_firing(len(values))

    def human() -> str:
        rows = [{"token": repr(t), "activation": v} for t, v in zip(result["tokens"], values, strict=True)]
        table = format_table(rows, [("token", "TOKEN"), ("activation", "ACTIVATION")])
        return table + ("" if fires else f"\nfeature {args.feature}: {not_firing(len(values))}")

    emit(args.json, data, human)


def cmd_similar(args: argparse.Namespace, studio: Studio) -> None:
    result = _call(studio, "similar", args, feature=args.feature, k=args.top)
    rows = [{"feature": f, "cosine": round(c, 4)} for f, c in result["similar"]]
    show: Callable[[], str] = lambda: format_table(rows, [("feature", "FEATURE"), ("cosine", "COSINE")])  # noqa: E731
    emit(args.json, result, show)
