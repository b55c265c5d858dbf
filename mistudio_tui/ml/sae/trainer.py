"""The SAE training loop: data-dependent init, Adam with schedules, metrics, checkpoints, resume, OOM retry."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import torch
from torch import Tensor

from mistudio_tui.ml.batches import BatchSource, PrefetchingSource
from mistudio_tui.ml.device import pick_device, seed_everything
from mistudio_tui.ml.sae.architectures import create_sae
from mistudio_tui.ml.sae.base import LossOutput
from mistudio_tui.ml.sae.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    remove_partial_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from mistudio_tui.ml.sae.checkpoint_files import CHECKPOINT_DIR
from mistudio_tui.ml.sae.config import K_ARCHITECTURES, SAEConfig, TrainConfig, default_lr, resolve_optimizer
from mistudio_tui.ml.sae.evaluate import (
    SCALAR_SUMS,
    ReconstructionStats,
    density_histogram,
    evaluate_reconstruction,
    log10_density,
)
from mistudio_tui.ml.sae.formats.saelens import CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE, save_saelens
from mistudio_tui.ml.sae.initialization import activation_scale, initial_b_dec
from mistudio_tui.ml.sae.optim import averaged_weights, build_optimizer, lift_dead_biases
from mistudio_tui.ml.sae.schedule import LRSchedule, sparsity_coefficient_at, sparsity_warmup_steps
from mistudio_tui.reporting import JobCancelled, JobContext

CHECKPOINT_VERSION = 1
AUXK_ARCHITECTURES = K_ARCHITECTURES
FIRE_RATE_EMA = 0.9  # per step: the firing rate behind SparseAutoencoder.rare_as_dead
DEAD_CHECK_EVERY = 16  # steps between host reads of "any latent dead?" (each read waits for the GPU)
# rows of each batch whose pre-activations set the dead latents' bias floors; fewer rows lift a little higher (the
# floor is a maximum over steps of a noisier estimate): absorb world, seed 0, dead 2.1% with 512 rows, 3.7% with 4,096
LIFT_ROWS = 512
# A dead latent's encoder bias is lifted until it would fire on this many times k / d_sae of those rows
# (dead_bias_floor): absorb world, TopK, seed 0: dead 5.4%, 4.4%, 2.1% at 1x, 2x, 4x.
DEAD_FIRING_RATE = 4.0
# at most this many lr a step (dense4x world EV 0.738 / 0.736 / 0.733 with a limit of 0.02 / 3 lr / 0.05; absorb
# world dead 3.2% / 2.1% / 2.1%)
LIFT_STEPS = 3.0
_T = TypeVar("_T")


class StepSums(NamedTuple, Generic[_T]):
    """The slots of the metric window's fused vector, in order: ReconstructionStats's own sums, then the trainer's
    loss terms (the window's `extra` sums, named as the metrics they become). One batch adds all of them at once."""

    sse: _T
    sum_sq: _T
    l1_sum: _T
    loss: _T
    aux_loss: _T
    sparsity_loss: _T


LOSS_TERMS = StepSums._fields[len(SCALAR_SUMS) :]  # ("loss", "aux_loss", "sparsity_loss")


def checkpoint_optimizer(state: dict[str, Any]) -> str:
    """The optimiser a checkpoint was trained with: recorded since the automatic choice changed, else read from the
    optimiser state (Adam keeps moment estimates, the schedule-free averager a `z` per parameter)."""
    if "optimizer_name" in state:
        return str(state["optimizer_name"])
    per_param = state["optimizer"].get("state", {})
    first: dict[str, Any] = next(iter(per_param.values()), {})
    return "adam" if "exp_avg" in first else "signum"


def effective_dead_threshold(sae_cfg: SAEConfig, train_cfg: TrainConfig) -> int:
    """Tokens without firing after which a latent is dead: the configured value, at most 1/20 of a short run."""
    return min(sae_cfg.dead_tokens_threshold, max(train_cfg.total_tokens // 20, 4 * train_cfg.batch_size))


class SAETrainer:
    """Trains one SAE from a BatchSource; `train_sae` is the usual entry point."""

    def __init__(
        self,
        sae_cfg: SAEConfig,
        train_cfg: TrainConfig,
        source: BatchSource,
        out_dir: Path,
        ctx: JobContext,
        prefetch: bool | None = None,
    ) -> None:
        if int(source.d_in) != sae_cfg.row_width:  # a transcoder's rows are [input | target]
            raise ValueError(
                f"the activations have d_in={source.d_in}, but the SAE config says d_in={sae_cfg.row_width}"
            )
        self.device = pick_device(train_cfg.device)
        # On a GPU, reading and copying the next batch overlaps the current step (the source must be this
        # trainer's alone: several trainers sharing one model stream pass prefetch=False).
        if prefetch if prefetch is not None else self.device.type == "cuda":
            source = PrefetchingSource(source, self.device)
        self.sae_cfg, self.train_cfg, self.source, self.ctx = sae_cfg, train_cfg, source, ctx
        self.out_dir = Path(out_dir)
        self.checkpoint_dir = self.out_dir / CHECKPOINT_DIR
        self.autocast_dtype = torch.bfloat16 if train_cfg.dtype == "bf16" else None
        seed_everything(train_cfg.seed)
        self.sae = create_sae(sae_cfg, torch.Generator().manual_seed(train_cfg.seed)).to(self.device)
        # Sparse decoding wins on CPU; on a GPU the dense matmul was faster at the widths measured (RESULTS.md).
        sparse = train_cfg.sparse_kernels
        self.sae.use_sparse_kernels = self.device.type != "cuda" if sparse is None else sparse
        self.d_sae = self.sae.d_sae
        self._use_optimizer(resolve_optimizer(train_cfg.optimizer, sae_cfg.architecture))
        self.total_steps = train_cfg.total_steps
        self.sparsity_warmup = sparsity_warmup_steps(train_cfg)
        self.base_coefficient = sae_cfg.l0_coefficient if sae_cfg.architecture == "jumprelu" else sae_cfg.l1_coefficient
        self.dead_threshold = effective_dead_threshold(sae_cfg, train_cfg)
        self.uses_auxk = sae_cfg.architecture in AUXK_ARCHITECTURES and sae_cfg.aux_k_coefficient > 0
        # Training state (all of it goes into checkpoints).
        self.step = 0
        self.tokens = 0
        self.act_scale = 1.0
        self.micro_batch_size = train_cfg.batch_size
        self.tokens_since_fired = torch.zeros(self.d_sae, dtype=torch.int64, device=self.device)
        self.fire_rate = torch.full((self.d_sae,), (sae_cfg.k or 0) / self.d_sae, device=self.device)
        # the metric window; its extra sums are the loss terms (LOSS_TERMS)
        self.window = ReconstructionStats(self.sae.d_out, self.d_sae, self.device, extra=len(LOSS_TERMS))
        self._zero = torch.zeros((), device=self.device)  # a loss term the architecture does not have
        self._weights: dict[int, Tensor] = {}  # per batch size: what each of the window's sums is multiplied by
        self.histogram_fired = torch.zeros(self.d_sae, dtype=torch.int64, device=self.device)
        self.histogram_tokens = 0
        self.last_lr = self.schedule.lr_at(0)
        self.last_metrics: dict[str, float] = {}
        self.last_checkpoint_step = -1
        self.resumed_from: int | None = None
        self.dead_count: int | None = None  # latents dead at the last check (None: not checked yet)
        self._last_batch: Tensor | None = None  # rows of the last full step, as the SAE took them
        self._window_start = time.perf_counter()

    # --- set-up ----------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        """Resume from the latest checkpoint, or initialise from the first batches of data."""
        partial = remove_partial_checkpoints(self.checkpoint_dir)
        if partial:
            self.ctx.log(f"removed {len(partial)} unfinished checkpoint file(s) of an earlier run (a killed write)")
        latest = latest_checkpoint(self.checkpoint_dir)
        if resume and latest is not None:
            self._restore(latest)
            self.ctx.log(f"resumed from {latest} at step {self.step} ({self.tokens:,} tokens)")
            return
        if latest is not None:
            raise ValueError(
                f"{self.out_dir} already holds training checkpoints; resume the run or choose an empty folder"
            )
        if resume:
            self.ctx.log(f"no checkpoint in {self.checkpoint_dir}; starting from scratch")
        self._initialize_from_data()

    @torch.no_grad()
    def _initialize_from_data(self) -> None:
        chunks, seen = [], 0
        while seen < self.train_cfg.init_tokens:
            batch = self._next_batch(min(self.train_cfg.batch_size, self.train_cfg.init_tokens - seen))
            chunks.append(batch)
            seen += batch.shape[0]
        x = torch.cat(chunks)
        if self.sae_cfg.normalize_activations:
            self.act_scale = activation_scale(x)
            x = x * self.act_scale
        self.sae.b_dec.copy_(initial_b_dec(self.sae.split(x)[1], self.train_cfg.b_dec_init))
        self.sae.initialize_from_batch(x)
        self.ctx.log(
            f"initialised from {seen:,} tokens: activation scale {self.act_scale:.4g}, "
            f"b_dec = {self.train_cfg.b_dec_init}, {self.optimizer_name} lr {self.peak_lr:.3g}, "
            f"dead after {self.dead_threshold:,} tokens"
        )

    def _next_batch(self, n: int) -> Tensor:
        batch = self.source.next_batch(n)
        if tuple(batch.shape) != (n, self.sae_cfg.row_width):
            raise ValueError(
                f"the activation source returned a batch of shape {tuple(batch.shape)}, "
                f"expected ({n}, {self.sae_cfg.row_width})"
            )
        return batch.to(self.device, non_blocking=True).float()

    # --- the loop --------------------------------------------------------------------------------
    def train(self) -> None:
        """Run optimiser steps until the token budget is spent; on cancel, checkpoint and re-raise."""
        self._window_start = time.perf_counter()
        try:
            while self.step < self.total_steps:
                self.ctx.check_cancelled()
                self.train_step()
                self.after_step()
        except JobCancelled:
            path = self.save_checkpoint()
            self.ctx.log(f"training cancelled at step {self.step}; checkpoint written to {path}")
            raise

    def after_step(self) -> None:
        """Report the metrics, histogram, checkpoint and progress due at the current step."""
        if self.step % self.train_cfg.metrics_every == 0:
            self._emit_metrics()
        if self.step % self.train_cfg.density_hist_every == 0:
            self._emit_histogram()
        if self.step % self.train_cfg.checkpoint_every == 0:
            self.save_checkpoint()
        self.ctx.progress(
            self.tokens, self.train_cfg.total_tokens, f"step {self.step}/{self.total_steps}", unit="tokens"
        )

    def train_step(self) -> None:
        """One optimiser step on the next batch, with all the bookkeeping (no reporting)."""
        n = min(self.train_cfg.batch_size, self.train_cfg.total_tokens - self.tokens)
        x = self._next_batch(n)
        if self.act_scale != 1.0:
            x = x * self.act_scale
        if n == self.train_cfg.batch_size or self._last_batch is None:  # a short last batch gives a noisy cut
            self._last_batch = x
        lr = self.schedule.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        coefficient = sparsity_coefficient_at(self.step, self.base_coefficient, self.sparsity_warmup)
        dead_mask = self._dead_mask()
        self.sae.start_step(self.step, self.total_steps)
        outputs = self._gradients_with_oom_retry(x, coefficient, dead_mask)
        self._reduce_gradients(x.shape[0], n)
        self.sae.before_optimizer_step()
        if self.train_cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.sae.parameters(), self.train_cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sae.after_optimizer_step()
        if dead_mask is not None:
            lift_dead_biases(self.sae.b_enc, dead_mask, self.dead_bias_floor(x), self.optimizer)
        self._record(x, outputs)
        self.step += 1
        self.tokens += n
        self.last_lr = lr

    @torch.no_grad()
    def dead_bias_floor(self, x: Tensor) -> Tensor:
        """Per latent, the encoder bias at which it would fire on DEAD_FIRING_RATE x k / d_sae of the rows of `x` (as
        the SAE takes them; averaged over all processes), but at most LIFT_STEPS optimiser steps above its bias now.

        Where many are dead each fires on fewer rows, so that the lifted ones together take at most k slots a row:
        beyond that they crowd the live latents out (a 48-wide SAE on 24 planted features, tests/unit/
        test_sae_training.py, collapsed to EV 0.16 with its 24 dead lifted to 4 x k / d_sae; fine at 2 x, k slots).
        The step limit stops a chase: a lifted latent that only hurts turns its encoder away from the data, the next
        floor is higher, and on the dense4x world biases ran to 100-200 and held-out EV to -1.6; limited to 3 steps,
        EV 0.736 (0.739 before the per-latent lift) while the absorb world kept its 2.1% dead.
        """
        k = self.sae_cfg.k or 1
        rate = min(DEAD_FIRING_RATE * k / self.d_sae, k / max(1, self.dead_count or 0))
        floor = self._reduce_floor(-self.sae.pre_activation_quantile(x[:LIFT_ROWS], rate))
        return torch.minimum(floor, self.sae.b_enc.float() + LIFT_STEPS * self.optimizer.param_groups[0]["lr"])

    def _dead_mask(self) -> Tensor | None:
        """Latents dead at this step for AuxK, or None when none is (checked on the host every few steps only)."""
        if not self.uses_auxk or self.tokens < self.dead_threshold:  # nothing can have been silent that long yet
            return None
        mask = self.tokens_since_fired >= self.dead_threshold
        if self.sae.rare_as_dead:
            mask |= self.fire_rate < self.sae.rare_as_dead * (self.sae_cfg.k or 0) / self.d_sae
        if self.dead_count is None or self.step % DEAD_CHECK_EVERY == 0:
            self.dead_count = int(mask.sum())
        return mask if self.dead_count else None

    def _gradients_with_oom_retry(
        self, x: Tensor, coefficient: float, dead_mask: Tensor | None
    ) -> list[tuple[Tensor, LossOutput]]:
        """Accumulate gradients over micro-batches; on out-of-memory halve the micro-batch and retry the step."""
        while True:
            try:
                return self._forward_backward(x, coefficient, dead_mask)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                if self.micro_batch_size <= 1:
                    raise
                smaller = max(1, self.micro_batch_size // 2)
                self.ctx.log(
                    f"out of memory at step {self.step} with {self.micro_batch_size} rows at once; retrying with "
                    f"{smaller} (gradients are accumulated, so the batch stays {x.shape[0]})",
                    level="warning",
                )
                self.micro_batch_size = smaller
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _forward_backward(
        self, x: Tensor, coefficient: float, dead_mask: Tensor | None
    ) -> list[tuple[Tensor, LossOutput]]:
        chunks = x.split(self.micro_batch_size) if self.micro_batch_size < x.shape[0] else (x,)
        outputs = []
        for chunk in chunks:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_dtype is not None):
                out = self.sae.loss(chunk, coefficient, dead_mask)
            total = out.total if len(chunks) == 1 else out.total * (chunk.shape[0] / x.shape[0])
            total.backward()
            outputs.append((chunk, out))
        return outputs

    @torch.no_grad()
    def _record(self, x: Tensor, outputs: list[tuple[Tensor, LossOutput]]) -> None:
        # Each term is one small kernel on a GPU, where the step's launches bound its speed: a handful per step.
        for chunk, out in outputs:
            rows = chunk.shape[0]
            aux = self._zero if out.aux_term is None else out.aux_term.detach()
            sparsity = self._zero if out.sparsity_term is None else out.sparsity_term.detach()
            # the means are weighted by the rows (_row_weights)
            target = self.sae.split(chunk)[1]
            terms = StepSums(
                sse=out.mse.detach(),
                sum_sq=target.pow(2).sum(),
                l1_sum=out.l1_sum,
                loss=out.total.detach(),
                aux_loss=aux,
                sparsity_loss=sparsity,
            )
            self.window.add(rows, torch.stack(terms), target.sum(0), out.fired, self._row_weights(rows))
        fired = outputs[0][1].fired if len(outputs) == 1 else torch.stack([out.fired for _, out in outputs]).sum(0)
        fired, rows = self._reduce_fired(fired, x.shape[0])
        self.tokens_since_fired += rows
        self.tokens_since_fired.masked_fill_(fired > 0, 0)
        if self.sae.rare_as_dead:
            self.fire_rate.lerp_(fired.float() / rows, 1.0 - FIRE_RATE_EMA)
        self.histogram_fired += fired
        self.histogram_tokens += rows

    def _row_weights(self, rows: int) -> Tensor:
        if rows not in self._weights:
            # means over the batch (mse, the loss terms) become sums; sum_sq and l1_sum are sums already
            weights = StepSums(sse=rows, sum_sq=1, l1_sum=1, loss=rows, aux_loss=rows, sparsity_loss=rows)
            self._weights[rows] = torch.tensor(weights, device=self.device, dtype=torch.float32)
        return self._weights[rows]

    # --- data-parallel hooks (no-ops here; ml.sae.distributed overrides them) -----------------------
    def _reduce_gradients(self, local_rows: int, global_rows: int) -> None:
        """Turn this process's gradients (mean over its `local_rows`) into the mean over `global_rows`."""

    def _reduce_fired(self, fired: Tensor, rows: int) -> tuple[Tensor, int]:
        """Per-latent firing counts and rows of this step over all processes."""
        return fired, rows

    def _reduce_window(self) -> None:
        """Sum the metric window over all processes before it is reported."""

    def _reduce_floor(self, floor: Tensor) -> Tensor:
        """The dead latents' bias floors averaged over all processes (each computes them from its own rows)."""
        return floor

    # --- reporting -------------------------------------------------------------------------------
    def _emit_metrics(self) -> None:
        if self.window.tokens == 0:
            return
        self._reduce_window()
        stats = self.window.result()
        n = self.window.tokens
        losses = dict(zip(LOSS_TERMS, (v / n for v in self.window.extra_sums().tolist()), strict=True))
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        row: dict[str, float] = {
            "tokens": float(self.tokens),
            "loss": losses["loss"],
            "mse": stats["mse"],
            "nmse": stats["nmse"],
            "explained_variance": stats["explained_variance"],
            "l0": stats["l0"],
            "l1": stats["l1"],
            "dead_fraction": float((self.tokens_since_fired >= self.dead_threshold).float().mean()),
            "dense_fraction": stats["dense_fraction"],
            "lr": self.last_lr,
            "tokens_per_s": n / elapsed,
        }
        if self.sae_cfg.architecture in AUXK_ARCHITECTURES:
            row["aux_loss"] = losses["aux_loss"]
        else:
            row["sparsity_loss"] = losses["sparsity_loss"]
        self.ctx.metric(self.step, **row)
        self.last_metrics = row
        self.window.reset()
        self._window_start = time.perf_counter()

    def _emit_histogram(self) -> None:
        if self.histogram_tokens == 0:
            return
        density = self.histogram_fired.double() / self.histogram_tokens
        hist: dict[str, Any] = density_histogram(density.float().cpu())
        self.ctx.artifact(
            "density_histogram", step=self.step, tokens=self.tokens, window_tokens=self.histogram_tokens, **hist
        )
        self.histogram_fired.zero_()
        self.histogram_tokens = 0

    def _use_optimizer(self, name: str) -> None:
        """Train with optimiser `name` ("adam" or "signum"): its automatic lr and schedule unless configured."""
        self.optimizer_name = name
        lr = self.train_cfg.lr
        signum = self.sae.signum
        self.peak_lr = lr if lr is not None else default_lr(self.d_sae, name, signum.lr, self.train_cfg.total_steps)
        self.optimizer = build_optimizer(self.sae.parameters(), name, self.peak_lr, self.train_cfg.adam_betas, signum)
        self.schedule = LRSchedule.from_config(self.train_cfg, self.peak_lr, name)

    # --- checkpoints -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "optimizer_name": self.optimizer_name,
            "step": self.step,
            "tokens": self.tokens,
            "sae_config": self.sae_cfg.to_dict(),
            "train_config": self.train_cfg.to_dict(),
            "model": self.sae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": dataclasses.asdict(self.schedule),
            "source": self.source.state_dict(),
            "rng": capture_rng_state(),
            "act_scale": self.act_scale,
            "micro_batch_size": self.micro_batch_size,
            "tokens_since_fired": self.tokens_since_fired,
            "fire_rate": self.fire_rate,
            "window": self.window.state_dict(),
            "histogram_fired": self.histogram_fired,
            "histogram_tokens": self.histogram_tokens,
            "last_metrics": self.last_metrics,
            "dead_count": self.dead_count,
        }

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step, keep the newest `keep_checkpoints`, announce it."""
        path = save_checkpoint(self.checkpoint_dir, self.step, self._state(), keep=self.train_cfg.keep_checkpoints)
        self.last_checkpoint_step = self.step
        self.ctx.artifact("checkpoint", path, step=self.step, tokens=self.tokens)
        return path

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        saved = SAEConfig.from_dict(state["sae_config"])
        for name in ("architecture", "d_in", "d_sae"):
            if getattr(saved, name) != getattr(self.sae_cfg, name):
                raise ValueError(
                    f"checkpoint {path} has {name}={getattr(saved, name)!r}, "
                    f"but the SAE config asks for {getattr(self.sae_cfg, name)!r}"
                )
        self.sae.load_state_dict(state["model"])
        used = checkpoint_optimizer(state)
        if used != self.optimizer_name:
            if self.train_cfg.optimizer != "auto":
                raise ValueError(
                    f"checkpoint {path} was trained with {used}, but the training config asks for "
                    f"{self.optimizer_name}; resume with optimizer {used} (or auto), or start a new run"
                )
            # "auto" chose differently when this run started (the default changed since): finish it as it began
            self.ctx.log(
                f"resuming with {used}, the optimiser this run started with (auto now picks {self.optimizer_name})"
            )
            self._use_optimizer(used)
        self.optimizer.load_state_dict(state["optimizer"])
        self.source.load_state_dict(state["source"])
        restore_rng_state(state["rng"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.act_scale = float(state["act_scale"])
        self.micro_batch_size = int(state["micro_batch_size"])
        self.tokens_since_fired = state["tokens_since_fired"].to(self.device)
        if "fire_rate" in state:  # written before the rate was kept: it restarts at k / d_sae
            self.fire_rate = state["fire_rate"].to(self.device)
        self.window.load_state_dict(state["window"])
        if "extra" not in state["window"]:  # written before the loss terms joined the window
            self.window.extra_sums().copy_(state["window_losses"])
        self.histogram_fired = state["histogram_fired"].to(self.device)
        self.histogram_tokens = int(state["histogram_tokens"])
        self.last_metrics = dict(state["last_metrics"])
        self.dead_count = state.get("dead_count")  # absent from older checkpoints: checked at the next step
        self.last_checkpoint_step = self.step
        self.resumed_from = self.step

    # --- the end ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _calibrate_threshold(self) -> None:
        """A BatchTopK SAE's inference threshold, from the weights it is saved with on the last full training batch (the
        stream is not read further: members of a multi-SAE run share it)."""
        calibrate = getattr(self.sae, "calibrate_threshold", None)
        if calibrate is not None and self._last_batch is not None:  # (none after a resume at the very end)
            calibrate([self._last_batch])

    def finish(self, eval_source: BatchSource | None) -> dict[str, Any]:
        """Report the last window, checkpoint, fold the normaliser, evaluate, save the SAELens folder."""
        self._emit_metrics()
        self._emit_histogram()
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint()
        with averaged_weights(self.optimizer):  # schedule-free: save the average, not the last iterate
            self._calibrate_threshold()
            sae = copy.deepcopy(self.sae).eval()
        sae.fold_activation_scale(self.act_scale)
        evaluation: dict[str, Any] | None = None
        sparsity = None
        if self.train_cfg.eval_tokens > 0:
            result = evaluate_reconstruction(
                sae, eval_source or self.source, self.train_cfg.eval_tokens, self.train_cfg.batch_size, self.ctx
            )
            evaluation = {**result.metrics, "source": "held_out" if eval_source is not None else "training_stream"}
            sparsity = log10_density(result.density)
        save_saelens(sae, self.out_dir, self.train_cfg.metadata, sparsity=sparsity)
        self.ctx.artifact("sae", self.out_dir, architecture=self.sae_cfg.architecture, d_in=sae.d_in, d_sae=sae.d_sae)
        return {
            "architecture": self.sae_cfg.architecture,
            "d_in": self.sae_cfg.d_in,
            "d_sae": self.d_sae,
            "steps": self.step,
            "tokens": self.tokens,
            "lr": self.peak_lr,
            "optimizer": self.optimizer_name,
            "act_scale": self.act_scale,
            "dead_tokens_threshold": self.dead_threshold,
            "micro_batch_size": self.micro_batch_size,
            "device": str(self.device),
            "resumed_from_step": self.resumed_from,
            "final_metrics": dict(self.last_metrics),
            "eval": evaluation,
            "paths": {
                "sae": str(self.out_dir),
                "cfg": str(self.out_dir / CFG_FILE),
                "weights": str(self.out_dir / WEIGHTS_FILE),
                "sparsity": str(self.out_dir / SPARSITY_FILE) if sparsity is not None else None,
                "checkpoints": str(self.checkpoint_dir),
            },
        }


def train_sae(
    sae_cfg: SAEConfig,
    train_cfg: TrainConfig,
    source: BatchSource,
    out_dir: Path,
    ctx: JobContext,
    resume: bool = False,
    eval_source: BatchSource | None = None,
) -> dict[str, Any]:
    """Train an SAE on `source`, save it in the SAELens layout in `out_dir`, and return a JSON-able summary."""
    trainer = SAETrainer(sae_cfg, train_cfg, source, Path(out_dir), ctx)
    ctx.started(str(trainer.device))
    trainer.prepare(resume)
    trainer.train()
    return trainer.finish(eval_source)
