"""A long-lived inference worker for interactive features (steering, feature activations, analysis).

Torch-free: the UI and the CLI import this module; the model work runs in a spawned process
(`inference.server`) that keeps the last training's model and SAE loaded, so each request costs only compute.
Its output goes to `logs/inference.log`. Every op takes `training_id` (a training id or name) and an optional
`device` ("auto": CUDA when present). Texts get the tokenizer's BOS token prepended; BOS is left out of
per-token results and is never steered unless asked.

Ops, their params and results:

- `ping()` → `{"pid": int, "cuda": bool}`.
- `feature_activations(training_id, text, features: list[int])` →
  `{"tokens": [str], "activations": {feature: [float per token]}}`.
- `top_features(training_id, text, k=5)` → `{"tokens": [str], "top": [[[feature, value], ...] per token]}`.
- `scales(training_id, features)` → `{feature: {"max_act", "decoder_norm", "typical_norm", "added_norm",
  "relative_norm", "never_fired", "source"}}` for strength 1 (max activation from the newest ready feature set,
  else a quick pass over the training's tokenization; relative_norm = added_norm / the hook's typical norm).
- `generate(training_id, prompt, interventions=[{"feature": i, "strength": s, "method": "add"|"clamp"}],
  positions="all"|"prompt"|"generated", temperature=1.0, top_p=1.0, max_tokens=32, seed=0,
  strengths=None | [s, ...], include_bos=False, use_cache=True, units="max"|"absolute")` — streaming: partials
  `{"variant": "normal"|"steered:<strength>", "token": str}`, then `{"prompt": str, "texts": {variant: str},
  "tokens": {variant: [str]}, "scales": {feature: {... as in scales, for the given strength}},
  "variant_scales": {variant: {feature: {...}}} (a sweep: each strength's own)}`. Strength is in
  units of the feature's max activation; `strengths` runs one steered variant per strength (a sweep); every
  variant uses the same seed; temperature 0 is greedy.
- `ablate(training_id, text, features, mode="zero"|"clamp", value=None, top=10)` → `{"tokens": [str],
  "loss_clean", "loss_ablated", "loss_delta", "n_active", "promoted": [[token, id, mean logit change]],
  "suppressed": [[token, id, mean logit change]], "per_position_loss_delta": [float]}`.
- `decoder_map(training_id, method="auto"|"umap"|"pca", seed=0)` → `{"method": str, "coords": [[x, y] per feature]}`.
- `similar(training_id, feature, k=10)` → `{"feature": int, "similar": [[feature, cosine], ...]}`.
- `cooccurrence(training_id, texts: list[str], features: list[int], top=10, add_partners=0)` → `{"features"
  (the group: the given features plus the first one's best `add_partners` partners), "tokens_seen",
  "fired": [int], "counts": [[int]], "jaccard": [[float]], "partners": {feature: [{"id", "count",
  "jaccard", "conditional", "error"}]}}`.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import time
from collections.abc import Generator, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mistudio_tui.supervisor import CHILD_END, Child, describe_exit

LOG_NAME = "inference.log"


class InferenceError(RuntimeError):
    """An op failed in the worker, or the worker itself stopped; the message is one line for the user."""


def _worker_entry(conn: Connection, home: str, log_path: str) -> None:
    # Imported in the child only, so the parent never loads torch.
    from mistudio_tui.inference.server import worker_main

    worker_main(conn, home, log_path)


class Stream:
    """The partial results of a streaming request, then its final result; closing it cancels the request."""

    def __init__(self, session: InferenceSession, request_id: int, replies: queue.Queue[Any]) -> None:
        self.id = request_id
        self._session = session
        self._replies = replies
        self.result: Any = None
        self._iter = self._run()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._iter)

    def _run(self) -> Generator[Any, None, None]:
        done = False
        try:
            while True:
                kind, data = self._session._wait(self.id, self._replies, None)
                if kind == "partial":
                    yield data
                else:
                    done = True
                    self.result = data
                    yield data
                    return
        finally:
            if not done:
                self._session.cancel(self.id)

    def cancel(self) -> None:
        """Stop the request (the iterator then raises InferenceError('cancelled'))."""
        self._session.cancel(self.id)

    def close(self) -> None:
        """Stop iterating, cancelling the request if it is still running."""
        self._iter.close()


class InferenceSession:
    """Client of the inference worker: starts it on first use, routes replies by request id, restarts it."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home)
        self.log_path = self.home / "logs" / LOG_NAME
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue[Any]] = {}
        self._owner: dict[int, Connection] = {}  # request id -> the connection of the worker serving it
        self._child: Child | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)

    # --- process ---------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        child = self._child
        return child.pid if child is not None and child.is_alive() else None

    def _ensure_started(self) -> Connection:
        with self._lock:
            if self._closed:
                raise InferenceError("the inference session is closed")
            if self._child is not None and self._child.is_alive() and self._conn is not None:
                return self._conn
            self._stop_process()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            child = Child.spawn(
                _worker_entry,
                (CHILD_END, str(self.home), str(self.log_path)),
                name="mistudio-inference",
                duplex=True,  # requests go down the same pipe
            )
            self._child, self._conn = child, child.conn
            self._reader = threading.Thread(target=self._read, args=(child,), name="inference-replies")
            self._reader.daemon = True
            self._reader.start()
            return child.conn

    def _read(self, child: Child) -> None:
        conn = child.conn
        for message in child.messages(block=True):
            replies = self._pending.get(int(message.get("id", -1)))
            if replies is None:
                continue
            if "partial" in message:
                replies.put(("partial", message["partial"]))
            elif "result" in message:
                replies.put(("result", message["result"]))
            else:
                replies.put(("error", str(message.get("error") or "inference failed")))
        child.join(timeout=2)
        with self._lock:
            if self._conn is conn:
                self._conn = None
            stale = [rid for rid, owner in self._owner.items() if owner is conn]
        reason = "inference worker was closed" if self._closed else describe_exit(child.exitcode, "inference worker")
        for rid in stale:
            self._owner.pop(rid, None)
            replies = self._pending.pop(rid, None)
            if replies is not None:
                replies.put(("error", f"{reason}; see {self.log_path}"))

    def _stop_process(self) -> None:
        conn, child = self._conn, self._child
        self._conn = self._child = None
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send({"shutdown": True})
            except (OSError, ValueError):
                pass
            conn.close()
        if child is not None:
            child.stop(grace=3, kill_after=3)  # time to shut down on its own, then terminate, then kill

    # --- requests --------------------------------------------------------------------------------
    def _submit(self, op: str, params: dict[str, Any]) -> tuple[int, queue.Queue[Any]]:
        conn = self._ensure_started()
        rid = next(self._ids)
        replies: queue.Queue[Any] = queue.Queue()
        self._pending[rid] = replies
        self._owner[rid] = conn
        try:
            with self._send_lock:
                conn.send({"id": rid, "op": op, "params": params})
        except (OSError, ValueError) as exc:
            self._pending.pop(rid, None)
            raise InferenceError(f"cannot reach the inference worker: {exc}") from None
        return rid, replies

    def _wait(self, rid: int, replies: queue.Queue[Any], timeout: float | None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            kind, data = replies.get(timeout=left)
        except queue.Empty:
            self.cancel(rid)
            raise InferenceError(f"the inference worker did not answer within {timeout:g} s") from None
        if kind != "partial":
            self._pending.pop(rid, None)
            self._owner.pop(rid, None)
        if kind == "error":
            raise InferenceError(data)
        return kind, data

    def call(self, op: str, timeout: float | None = 120, **params: Any) -> Any:
        """Run `op` and return its result (partials of streaming ops are skipped); blocks."""
        rid, replies = self._submit(op, params)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            kind, data = self._wait(rid, replies, left if timeout is not None else None)
            if kind == "result":
                return data

    def stream(self, op: str, **params: Any) -> Stream:
        """Run `op`, iterating over its partial results and then its final one; blocks between items."""
        rid, replies = self._submit(op, params)
        return Stream(self, rid, replies)

    def cancel(self, request_id: int) -> None:
        """Ask the worker to stop a request; whoever waits on it gets InferenceError('cancelled')."""
        replies = self._pending.pop(request_id, None)
        self._owner.pop(request_id, None)
        if replies is None:
            return
        replies.put(("error", "cancelled"))
        conn = self._conn
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send({"cancel": request_id})
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Stop the worker; later calls raise InferenceError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_process()
        atexit.unregister(self.close)
