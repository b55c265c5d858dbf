"""The inference worker: keeps a training's model and SAE loaded and answers the ops of `inference.session`.

Runs in a spawned process (never imports textual). Requests arrive over a duplex pipe; a reader thread queues
them and records cancels; the main thread serves one request at a time and replies with partials, a result or
an error message.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.db.states import RunState
from mistudio_tui.ml.analysis.ablation import ablate_features
from mistudio_tui.ml.analysis.decoder_map import decoder_map
from mistudio_tui.ml.data.tokenize import row_start_id
from mistudio_tui.ml.features.cooccurrence import CooccurrenceAccumulator
from mistudio_tui.ml.features.similarity import nearest_to
from mistudio_tui.ml.models.hooks import capture, patch_activation
from mistudio_tui.ml.models.loading import LoadedModel, load_model
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.evaluate import TranscoderSplice
from mistudio_tui.ml.steering.generate import IncrementalDecoder, Sampling, generate_ids
from mistudio_tui.ml.steering.interventions import FeatureScale, Intervention, StepState, steering_fn
from mistudio_tui.ml.token_display import token_strings
from mistudio_tui.reporting import JobCancelled, JobContext

QUICK_PASS_SEQUENCES = 32  # sequences of the training's tokenization scanned when no feature set gives max activations


@dataclass
class LoadedPair:
    """A training's model and SAE on one device, with lazily computed per-feature scales."""

    training_id: int
    device: str
    loaded: LoadedModel
    sae: SparseAutoencoder
    hook: str
    tokenization_dir: str | None
    max_acts: Tensor | None = None
    hook_out: str | None = None  # a transcoder's output hook: where its decoder writes, so where steering adds
    max_source: str = ""
    typical_norm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer


class RequestContext(JobContext):
    """JobContext of one request: cancelled when the session says so; log lines go to the worker log."""

    def __init__(self, is_cancelled: Callable[[], bool]) -> None:
        super().__init__(interval=0.0, is_cancelled=is_cancelled)

    def log(self, text: str, level: str = "info") -> None:
        print(f"[{level}] {text}", flush=True)

    def _send(self, message: Any) -> None:
        pass


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class InferenceServer:
    """The ops, over a cache holding the last loaded (model, SAE) pair."""

    def __init__(self, home: Path | str) -> None:
        from mistudio_tui.config import paths
        from mistudio_tui.db.connection import open_database

        self.paths = paths(home).ensure()
        open_database(self.paths.db)
        self._pair: LoadedPair | None = None

    # --- loading ---------------------------------------------------------------------------------
    def pair(self, training_id: Any, device: str | None = None) -> LoadedPair:
        """The model and SAE of training `training_id` (cached; loading another one frees the last)."""
        from mistudio_tui.db.lookup import resolve
        from mistudio_tui.db.models import Training
        from mistudio_tui.ml.device import pick_device
        from mistudio_tui.ml.sae.formats import load_any

        if training_id is None or str(training_id).strip() == "":
            raise ValueError("no training given: pass training_id (an SAE training id or name)")
        training = resolve(Training, training_id)
        target = str(pick_device(device or "auto"))
        cached = self._pair
        if cached is not None and cached.training_id == training.id and cached.device == target:
            return cached
        if training.status not in RunState.USABLE:
            raise ValueError(f"training '{training.name}' is {training.status}; steering needs a finished SAE")
        if training.model is None:
            raise ValueError(f"training '{training.name}' has no language model; attach one before steering")
        if not training.path or not Path(training.path).is_dir():
            raise FileNotFoundError(f"the SAE folder of training '{training.name}' is missing: {training.path}")
        self._pair = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        lm = training.model
        loaded = load_model(
            lm.path or lm.source, dtype=lm.dtype or "float32", device=target, trust_remote_code=lm.trust_remote_code
        )
        if not loaded.is_causal_lm:
            raise ValueError(f"model '{lm.name}' is not a causal language model; steering needs one")
        if loaded.tokenizer is None:
            raise ValueError(f"model '{lm.name}' has no tokenizer")
        sae_file = load_any(Path(training.path), device=loaded.device, dtype=loaded.dtype)
        sae = sae_file.sae.eval().requires_grad_(False)
        hook = training.hook_name or sae_file.metadata.get("hook_name")
        if not hook:
            raise ValueError(f"training '{training.name}' does not say which hook point its SAE reads")
        tok_dir = training.tokenization.path if training.tokenization is not None else None
        hook_out = (training.config or {}).get("hook_name_out") or sae_file.metadata.get("hook_name_out")
        if sae.cfg.is_transcoder and not hook_out:
            raise ValueError(f"training '{training.name}' is a transcoder but does not say which hook it writes")
        self._pair = LoadedPair(training.id, target, loaded, sae, hook, tok_dir, hook_out=hook_out)
        return self._pair

    def encode(self, pair: LoadedPair, text: str) -> tuple[Tensor, bool]:
        """(token ids [1, n] on the model's device, whether a BOS token was prepended)."""
        if not isinstance(text, str) or not text:
            raise ValueError("the text is empty; give some text to run the model on")
        tok = pair.tokenizer
        ids = list(tok(text, add_special_tokens=True)["input_ids"])
        try:  # the start token rows were tokenized with: BOS, CLS for encoders, else EOS
            bos: int | None = row_start_id(tok, prepend_bos=True)
        except ValueError:
            bos = None
        with_bos = bos is not None
        if bos is not None and (not ids or ids[0] != bos):
            ids = [int(bos), *ids]
        limit = getattr(pair.loaded.config.get_text_config(), "max_position_embeddings", None)
        if limit and len(ids) > limit:
            raise ValueError(f"the text has {len(ids)} tokens; this model reads at most {limit}")
        return torch.tensor([ids], device=pair.loaded.device), with_bos

    def token_strings(self, pair: LoadedPair, ids: Sequence[int]) -> list[str]:
        """Each token id as display text."""
        return token_strings(pair.tokenizer, ids)

    @torch.no_grad()
    def codes(self, pair: LoadedPair, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """(hook activations [n, d], SAE codes [n, d_sae]) for one sequence."""
        with capture(pair.loaded.model, [pair.hook]) as cap:
            cap.run(input_ids=input_ids)
            x = cap[pair.hook][0]
        return x, pair.sae.encode(x).float()

    @torch.no_grad()
    def ensure_scales(self, pair: LoadedPair, ctx: JobContext, fallback_text: str | None = None) -> None:
        """Fill the pair's max activations and typical hook norm.

        Max activations come from the newest ready feature set, else from a quick pass over the training's
        tokenization, else (recomputed for every prompt) from the prompt itself.
        """
        if pair.max_acts is not None and not (pair.max_source == "prompt" and fallback_text):
            return
        maxes = torch.zeros(pair.sae.d_sae)
        norms: list[Tensor] = []
        from_db = _feature_set_maxima(pair.training_id, pair.sae.d_sae)
        store = self._token_store(pair)
        sequences = self._store_sequences(pair, store) if store is not None else []
        if store is None and fallback_text:
            sequences = [self.encode(pair, fallback_text)[0]]
        for ids in sequences:
            ctx.check_cancelled()
            x, codes = self.codes(pair, ids)
            rows = slice(1, None) if ids.shape[1] > 1 else slice(None)
            maxes = torch.maximum(maxes, codes[rows].amax(0).cpu())
            norms.append(x[rows].float().norm(dim=-1).cpu())
        if norms:
            pair.typical_norm = float(torch.cat(norms).mean())
        if from_db is not None:
            pair.max_acts, pair.max_source = from_db, "feature set"
        else:
            pair.max_acts, pair.max_source = maxes, "quick pass" if store is not None else "prompt"

    def _token_store(self, pair: LoadedPair) -> Any:
        """The training's tokenization when it is on disk and not empty, else None."""
        from mistudio_tui.ml.data.token_store import TokenStore

        if not pair.tokenization_dir or not Path(pair.tokenization_dir).is_dir():
            return None
        try:
            store = TokenStore(Path(pair.tokenization_dir))
        except (FileNotFoundError, ValueError, KeyError):
            return None
        return store if len(store) else None

    def _store_sequences(self, pair: LoadedPair, store: Any) -> Iterator[Tensor]:
        for i in range(min(QUICK_PASS_SEQUENCES, len(store))):
            row = store.row(i)
            if len(row):
                yield torch.as_tensor(row, dtype=torch.long, device=pair.loaded.device)[None]

    def scale_of(self, pair: LoadedPair, feature: int, units: str = "max") -> FeatureScale:
        """A feature's max activation (1.0 when it never fired: the result says so) and decoder norm."""
        assert pair.max_acts is not None
        max_act = float(pair.max_acts[feature])
        return FeatureScale(
            max_act=max_act if max_act > 0 else 1.0,
            decoder_norm=float(pair.sae.W_dec[feature].float().norm()),
            typical_norm=pair.typical_norm,
            absolute=units == "absolute",
            extra={"never_fired": max_act <= 0, "source": pair.max_source, "units": units},
        )

    # --- ops -------------------------------------------------------------------------------------
    def op_ping(self, ctx: JobContext, **_: Any) -> dict[str, Any]:
        """Liveness check."""
        return {"pid": os.getpid(), "cuda": torch.cuda.is_available()}

    def op_feature_activations(
        self, ctx: JobContext, training_id: Any, text: str, features: Sequence[int], device: str | None = None
    ) -> dict[str, Any]:
        """Each token's activation of `features` on `text` (BOS left out)."""
        pair = self.pair(training_id, device)
        feats = _check_features(features, pair.sae.d_sae)
        ids, with_bos = self.encode(pair, text)
        _, codes = self.codes(pair, ids)
        start = 1 if with_bos else 0
        return {
            "tokens": self.token_strings(pair, ids[0, start:].tolist()),
            "activations": {f: codes[start:, f].tolist() for f in feats},
        }

    def op_top_features(
        self, ctx: JobContext, training_id: Any, text: str, k: int = 5, device: str | None = None
    ) -> dict[str, Any]:
        """The `k` most active features at each token of `text` (BOS left out; zero activations dropped)."""
        pair = self.pair(training_id, device)
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ids, with_bos = self.encode(pair, text)
        _, codes = self.codes(pair, ids)
        start = 1 if with_bos else 0
        values, idx = codes[start:].topk(min(int(k), pair.sae.d_sae), dim=-1)
        top = [
            [[int(i), float(v)] for v, i in zip(vs, js, strict=True) if v > 0]
            for vs, js in zip(values.tolist(), idx.tolist(), strict=True)
        ]
        return {"tokens": self.token_strings(pair, ids[0, start:].tolist()), "top": top}

    def op_scales(
        self, ctx: JobContext, training_id: Any, features: Sequence[int], device: str | None = None
    ) -> dict[int, Any]:
        """Max activation, decoder norm and norm relative to the hook's typical norm per unit strength."""
        pair = self.pair(training_id, device)
        feats = _check_features(features, pair.sae.d_sae)
        self.ensure_scales(pair, ctx)
        return {f: _scale_dict(self.scale_of(pair, f), 1.0) for f in feats}

    def op_generate(
        self,
        ctx: JobContext,
        emit: Callable[[Any], None],
        training_id: Any,
        prompt: str,
        interventions: Sequence[dict[str, Any]] = (),
        positions: str = "all",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 32,
        seed: int = 0,
        strengths: Sequence[float] | None = None,
        include_bos: bool = False,
        use_cache: bool = True,
        device: str | None = None,
        units: str = "max",
    ) -> dict[str, Any]:
        """Normal and steered completions of `prompt` with the same seed; streams each token as it comes.

        Strengths are in units of each feature's max activation, or (`units="absolute"`) plain coefficients."""
        pair = self.pair(training_id, device)
        parsed = [Intervention.from_dict(i, pair.sae.d_sae) for i in interventions]
        if not parsed:
            raise ValueError("no interventions given: add at least one feature with a strength")
        ids, with_bos = self.encode(pair, prompt)
        limit = getattr(pair.loaded.config.get_text_config(), "max_position_embeddings", None) or 1 << 30
        sampling = Sampling(
            max_tokens=max(1, min(int(max_tokens), limit - ids.shape[1])),
            temperature=float(temperature),
            top_p=float(top_p),
            seed=int(seed),
        )
        self.ensure_scales(pair, ctx, fallback_text=prompt)
        if units not in ("max", "absolute"):
            raise ValueError(f"units {units!r} are not supported; expected max or absolute")
        scales = {i.feature: self.scale_of(pair, i.feature, units) for i in parsed}
        max_acts = {f: s.unit for f, s in scales.items()}
        variants: list[tuple[str, list[Intervention] | None]] = [("normal", None)]
        variant_scales: dict[str, dict[int, dict[str, Any]]] = {}
        if strengths:
            for s in strengths:
                steered = [Intervention(i.feature, float(s), i.method) for i in parsed]
                variants.append((f"steered:{float(s):g}", steered))
                variant_scales[f"steered:{float(s):g}"] = {i.feature: _scale_dict(scales[i.feature], s) for i in parsed}
        else:
            same = {i.strength for i in parsed}
            name = f"steered:{parsed[0].strength:g}" if len(same) == 1 else "steered"
            variants.append((name, parsed))
        texts: dict[str, str] = {}
        tokens: dict[str, list[str]] = {}
        eos = pair.tokenizer.eos_token_id
        for name, chosen in variants:
            state = StepState(skip_first=with_bos and not include_bos, positions=positions)
            patch = None
            if chosen is not None:
                patch = self._steering_patch(pair, chosen, max_acts, state)

            decoder = IncrementalDecoder(pair.tokenizer)
            pieces: list[str] = []
            for token in generate_ids(pair.loaded.model, ids, sampling, state, patch, eos, use_cache, ctx):
                piece = decoder.push(token)
                pieces.append(piece)
                if piece:
                    emit({"variant": name, "token": piece})
            texts[name] = decoder.text
            tokens[name] = pieces
        return {
            "prompt": prompt,
            "texts": texts,
            "tokens": tokens,
            "scales": {i.feature: _scale_dict(scales[i.feature], i.strength) for i in parsed},
            "variant_scales": variant_scales,  # a sweep: each strength's own added norm
        }

    def _steering_patch(
        self, pair: LoadedPair, chosen: list[Intervention], max_acts: dict[int, float], state: StepState
    ) -> Callable[[], Any]:
        """A context-manager factory that steers every forward pass: at the SAE's hook, or for a transcoder at its
        output hook, with its input hook recorded first (a clamp reads its codes there)."""
        if pair.hook_out is None:
            fn = steering_fn(pair.sae, chosen, max_acts, state)
            return lambda: patch_activation(pair.loaded.model, pair.hook, fn)
        hook_out = pair.hook_out
        splice = TranscoderSplice(pair.sae)
        fn = steering_fn(pair.sae, chosen, max_acts, state, source=lambda: splice.recorded)

        def patch() -> Any:
            stack = contextlib.ExitStack()
            stack.enter_context(patch_activation(pair.loaded.model, pair.hook, splice.record))
            stack.enter_context(patch_activation(pair.loaded.model, hook_out, fn))
            return stack

        return patch

    def op_ablate(
        self,
        ctx: JobContext,
        training_id: Any,
        text: str,
        features: Sequence[int],
        mode: str = "zero",
        value: float | None = None,
        top: int = 10,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Change in next-token loss and the most moved logits when `features` are zeroed or clamped."""
        pair = self.pair(training_id, device)
        if pair.hook_out is not None:
            raise ValueError("feature ablation works on SAEs; this training is a transcoder (steer it instead)")
        feats = _check_features(features, pair.sae.d_sae)
        ids, with_bos = self.encode(pair, text)
        result = ablate_features(pair.loaded.model, pair.sae, pair.hook, ids, feats, mode, value, with_bos, int(top))
        promoted, suppressed = (
            self.token_strings(pair, [t for t, _ in moved]) for moved in (result.promoted, result.suppressed)
        )
        return {
            "tokens": self.token_strings(pair, ids[0].tolist()),
            "loss_clean": result.loss_clean,
            "loss_ablated": result.loss_ablated,
            "loss_delta": result.loss_delta,
            "n_active": result.n_active,
            "promoted": [[s, t, d] for s, (t, d) in zip(promoted, result.promoted, strict=True)],
            "suppressed": [[s, t, d] for s, (t, d) in zip(suppressed, result.suppressed, strict=True)],
            "per_position_loss_delta": result.per_position_loss_delta,
        }

    def op_decoder_map(
        self, ctx: JobContext, training_id: Any, method: str = "auto", seed: int = 0, device: str | None = None
    ) -> dict[str, Any]:
        """2-D coordinates of every decoder direction."""
        pair = self.pair(training_id, device)
        coords, used = decoder_map(pair.sae.W_dec, method, int(seed))
        return {"method": used, "coords": coords.tolist()}

    def op_similar(
        self, ctx: JobContext, training_id: Any, feature: int, k: int = 10, device: str | None = None
    ) -> dict[str, Any]:
        """The `k` features whose decoder directions are closest in cosine to `feature`'s."""
        pair = self.pair(training_id, device)
        (f,) = _check_features([feature], pair.sae.d_sae)
        W = pair.sae.W_dec.detach().float()
        found = nearest_to(W[f], W, top=min(int(k) + 1, W.shape[0]))
        rows = [[int(i), float(c)] for i, c in zip(found.ids.tolist(), found.cos.tolist(), strict=True) if i != f]
        return {"feature": f, "similar": rows[: int(k)]}

    @torch.no_grad()
    def op_cooccurrence(
        self,
        ctx: JobContext,
        training_id: Any,
        texts: Sequence[str],
        features: Sequence[int],
        top: int = 10,
        add_partners: int = 0,
        device: str | None = None,
    ) -> dict[str, Any]:
        """How often `features` (plus the first one's `add_partners` best partners) fire together on `texts`."""
        pair = self.pair(training_id, device)
        feats = _check_features(features, pair.sae.d_sae)
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts given for co-occurrence")
        codes = []
        for text in texts:
            ctx.check_cancelled()
            ids, with_bos = self.encode(pair, text)
            codes.append(self.codes(pair, ids)[1][1 if with_bos else 0 :])
        acc = CooccurrenceAccumulator(pair.sae.d_sae, group=feats, partners=max(int(top), int(add_partners), 1))
        for c in codes:
            acc.update(c)
        partners = {f: acc.partners_of(f, top=int(top)) for f in feats}
        extra = [int(p["id"]) for p in acc.partners_of(feats[0], top=int(add_partners))] if add_partners else []
        group = list(dict.fromkeys([*feats, *extra]))
        if len(group) > len(feats):
            acc = CooccurrenceAccumulator(pair.sae.d_sae, group=group, partners=0)
            for c in codes:
                acc.update(c)
        assert acc.group_counts is not None
        return {
            "features": group,
            "tokens_seen": acc.tokens_seen,
            "fired": [int(acc.fired[f]) for f in group],
            "counts": acc.group_counts.tolist(),
            "jaccard": acc.group_jaccard().tolist(),
            "partners": partners,
        }


def _check_features(features: Any, d_sae: int) -> list[int]:
    if isinstance(features, int):
        features = [features]
    try:
        feats = [int(f) for f in features]
    except (TypeError, ValueError):
        raise ValueError(f"features must be a list of feature indices, got {features!r}") from None
    if not feats:
        raise ValueError("no features given")
    bad = [f for f in feats if not 0 <= f < d_sae]
    if bad:
        raise ValueError(f"feature {bad[0]} is out of range; this SAE has features 0..{d_sae - 1}")
    return feats


def _scale_dict(scale: FeatureScale, strength: float) -> dict[str, Any]:
    return {
        "max_act": scale.max_act,
        "decoder_norm": scale.decoder_norm,
        "typical_norm": scale.typical_norm,
        "added_norm": abs(strength) * scale.unit * scale.decoder_norm,
        "relative_norm": scale.relative_norm(strength),
        **scale.extra,
    }


def _feature_set_maxima(training_id: int, d_sae: int) -> Tensor | None:
    """Max activations from the newest ready feature set of the training, or None."""
    from mistudio_tui.db.models import Feature, FeatureSet
    from mistudio_tui.db.rows import tuples

    fset = (
        FeatureSet.select()
        .where((FeatureSet.training == training_id) & (FeatureSet.status == "ready"))
        .order_by(FeatureSet.id.desc())
        .first()
    )
    if fset is None:
        return None
    maxes = torch.zeros(d_sae)
    query = Feature.select(Feature.index, Feature.max_activation).where(Feature.feature_set == fset)
    rows = tuples(query)
    found = False
    for index, value in rows:
        if 0 <= index < d_sae:
            maxes[index] = float(value or 0.0)
            found = True
    return maxes if found else None


OPS = (
    "ping",
    "feature_activations",
    "top_features",
    "scales",
    "generate",
    "ablate",
    "decoder_map",
    "similar",
    "cooccurrence",
)
STREAMING_OPS = ("generate",)


def error_message(exc: BaseException, op: str) -> str:
    """The one-line message the session shows for an exception raised by `op`."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return f"CUDA out of memory while running {op}; use a shorter text, fewer tokens or a smaller model"
    if isinstance(exc, (ValueError, FileNotFoundError, LookupError, PermissionError)):
        return _short(exc)
    return f"{op} failed: {type(exc).__name__}: {_short(exc)}"


def serve(conn: Connection, home: str) -> None:
    """Answer requests from `conn` until it closes or a shutdown request arrives."""
    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancelled: set[int] = set()
    stopping = threading.Event()
    send_lock = threading.Lock()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                stopping.set()
                requests.put(None)
                return
            if "cancel" in message:
                cancelled.add(int(message["cancel"]))
            elif message.get("shutdown"):
                stopping.set()
                requests.put(None)
                return
            else:
                requests.put(message)

    def send(message: dict[str, Any]) -> None:
        with send_lock, contextlib.suppress(OSError, ValueError):
            conn.send(message)

    threading.Thread(target=read, name="inference-reader", daemon=True).start()
    server: InferenceServer | None = None
    while True:
        message = requests.get()
        if message is None:
            return
        rid = int(message["id"])
        op = str(message.get("op", ""))
        params = dict(message.get("params") or {})

        def is_cancelled(rid: int = rid) -> bool:
            return rid in cancelled or stopping.is_set()

        ctx = RequestContext(is_cancelled)
        try:
            if rid in cancelled:
                raise JobCancelled()
            if op not in OPS:
                raise ValueError(f"unknown inference op {op!r}; expected one of {', '.join(OPS)}")
            if server is None:
                server = InferenceServer(home)
            method = getattr(server, f"op_{op}")
            args: tuple[Any, ...] = (ctx,)
            if op in STREAMING_OPS:
                args = (ctx, lambda data, rid=rid: send({"id": rid, "partial": data}))
            try:
                inspect.signature(method).bind(*args, **params)
            except TypeError as exc:
                raise ValueError(f"bad parameters for {op}: {_short(exc)}") from None
            send({"id": rid, "result": method(*args, **params)})
        except JobCancelled:
            send({"id": rid, "error": "cancelled", "cancelled": True})
        except Exception as exc:  # every failure goes back to the caller as one line; the traceback to the log
            traceback.print_exc()
            send({"id": rid, "error": error_message(exc, op)})
        finally:
            cancelled.discard(rid)


def worker_main(conn: Connection, home: str, log_path: str) -> None:
    """Entry point of the spawned worker: output to the log, then serve."""
    from mistudio_tui.process_io import redirect_output

    redirect_output(log_path)
    print(f"[info] inference worker {os.getpid()} serving {home}", flush=True)
    try:
        serve(conn, home)
    finally:
        conn.close()
