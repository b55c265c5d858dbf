"""SAE quality against ground truth and real activations: miStudio's defaults vs sparsify and SAELens, same data.

    python benchmarks/sae_quality.py --quick                       # one small world, one seed (< 10 min, 2 CPUs)
    python benchmarks/sae_quality.py [--worlds base,sparse16x,dense4x,absorb] [--seeds 0,1,2] [--tokens N]
        [--trainers ours-topk,ours-batchtopk,ours-jumprelu,ours-relu,sparsify,saelens] [--real-model DIR]

Needs the benchmark extra (`pip install -e .[bench] -c constraints` with torch pinned): `sae-lens` builds the
synthetic worlds (`sae_lens.synthetic`: Zipfian firing, hierarchies with mutually exclusive children, low-rank
correlations, magnitude spread, a bias) and trains SAELens's TopK SAE with its documented recipe (`SAETrainer`,
Adam 3e-4, constant lr); `eai-sparsify` trains with its own `Trainer` and default optimizer (SignSGD inside a
schedule-free averager), fed the same activations through a stand-in model whose hooked layer emits them.

Every trainer sees the same training rows (one pool per world, sampled once), the same width, k and token budget,
and batches of 4,096 tokens; each SAE is scored by the same code on held-out rows: MCC (Hungarian-matched |cos| of
decoder rows to the true features), the fraction of true features recovered at |cos| >= 0.9, explained variance,
L0 and the fraction of latents that never fire. `--real-model DIR` (a Hugging Face folder, e.g. all-MiniLM-L6-v2)
adds two real activation sets: two layers of that model on two different texts (EV, L0, dead; no ground truth).
ReLU-L1 and JumpReLU (`ours-relu`, `ours-jumprelu`; not in `--quick`) are compared with TopK at equal L0: their
sparsity coefficient is searched with full-budget runs (secant on log coefficient vs log L0) until the L0 on training
rows is within 10% of k; the coefficient found, the runs and the calibration time are printed.
Ends with `BENCH` lines comparing miStudio's TopK and BatchTopK with the best anchor on every row, and ReLU /
JumpReLU's EV with TopK's (goal: within 0.02).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.formats import load_any
from mistudio_tui.ml.sae.ground_truth import score_decoder
from mistudio_tui.ml.sae.trainer import train_sae

BATCH = 4096
SEQ = 64  # sparsify reads sequences: 64 sequences of 64 "tokens" make one 4,096-token batch
HELD_OUT = 32_768


# --- worlds -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """A synthetic activation world with known features (built with sae_lens.synthetic)."""

    name: str
    features: int
    dim: int
    max_prob: float
    min_prob: float
    zipf: float = 0.5
    hierarchy_roots: int = 0  # 0: no hierarchy
    branching: tuple[int, int] = (2, 4)
    exclusive: float = 0.0  # fraction of parents whose children are mutually exclusive
    correlation: float = 0.0  # low-rank correlation scale (0: independent firing)
    magnitudes: tuple[float, float] = (1.0, 1.0)  # mean firing magnitude, linear from first to last feature
    magnitude_std: float = 0.1
    bias: float = 0.0
    tokens: int = 2_000_000
    note: str = ""

    @property
    def width(self) -> int:
        """The SAE width: a little narrower than the truth, as in practice."""
        return self.features * 15 // 16

    def build(self):  # -> sae_lens.synthetic.SyntheticModel
        from sae_lens.synthetic import (
            HierarchyConfig,
            LinearMagnitudeConfig,
            LowRankCorrelationConfig,
            SyntheticModel,
            SyntheticModelConfig,
            ZipfianFiringProbabilityConfig,
        )

        hierarchy = None
        if self.hierarchy_roots:
            hierarchy = HierarchyConfig(
                total_root_nodes=self.hierarchy_roots,
                branching_factor=self.branching,
                max_depth=1,
                mutually_exclusive_portion=self.exclusive,
                compensate_probabilities=True,
            )
        cfg = SyntheticModelConfig(
            num_features=self.features,
            hidden_dim=self.dim,
            firing_probability=ZipfianFiringProbabilityConfig(
                exponent=self.zipf, max_prob=self.max_prob, min_prob=self.min_prob
            ),
            hierarchy=hierarchy,
            correlation=LowRankCorrelationConfig(rank=16, correlation_scale=self.correlation)
            if self.correlation
            else None,
            mean_firing_magnitudes=LinearMagnitudeConfig(start=self.magnitudes[0], end=self.magnitudes[1]),
            std_firing_magnitudes=self.magnitude_std,
            bias=self.bias,
            seed=1234,
        )
        with contextlib.redirect_stdout(io.StringIO()):
            return SyntheticModel(cfg)


WORLDS = {
    world.name: world
    for world in (
        World(
            "base",
            2048,
            192,
            0.05,
            0.004,
            hierarchy_roots=128,
            exclusive=0.5,
            correlation=0.1,
            magnitudes=(0.5, 2.0),
            bias=1.0,
            note="like the issue's world: 10.7x superposition, L0 ~ 10",
        ),
        World("sparse16x", 4096, 256, 0.02, 0.0008, zipf=0.7, correlation=0.05, note="16x superposition, low L0"),
        World(
            "dense4x",
            1024,
            256,
            0.2,
            0.02,
            correlation=0.3,
            magnitudes=(1.0, 1.0),
            bias=0.5,
            note="4x superposition, high L0, strong correlations",
        ),
        World(
            "absorb",
            2048,
            192,
            0.04,
            0.004,
            hierarchy_roots=256,
            branching=(3, 6),
            exclusive=1.0,
            correlation=0.1,
            magnitudes=(0.2, 5.0),
            magnitude_std=0.3,
            bias=2.0,
            note="every parent's children mutually exclusive; wide magnitude spread",
        ),
        World(
            "quick",
            512,
            64,
            0.08,
            0.005,
            hierarchy_roots=48,
            exclusive=0.5,
            correlation=0.1,
            magnitudes=(0.5, 2.0),
            bias=1.0,
            tokens=1_000_000,
            note="small world for the developers' loop",
        ),
    )
}


def sample_rows(model, n: int, seed: int) -> tuple[Tensor, float]:
    """`n` activation rows of a world (same seed, same rows) and the mean number of true features firing."""
    rows, l0_sum = [], 0.0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        done = 0
        while done < n:
            take = min(65_536, n - done)
            x, features = model.sample_with_features(take)
            rows.append(x.float())
            l0_sum += float((features != 0).sum())
            done += take
    return torch.cat(rows), l0_sum / n


def _cached(cache: Path | None, stem: str, key: str, build: Callable[[], Any]) -> Any:
    """`build()`, kept in `cache` as `<stem>-<hash of key>.pt`; without a cache, built every time."""
    if cache is None:
        return build()
    import hashlib

    path = cache / f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path)
    value = build()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(value, path.with_suffix(".part"))
    path.with_suffix(".part").replace(path)  # a run stopped mid-write leaves no half file under the real name
    return value


def cached_rows(model, world: World, n: int, seed: int, cache: Path | None) -> tuple[Tensor, float]:
    """`sample_rows`, kept in `cache` (keyed by the world's definition, n and seed): sampling a 2M-row world takes
    minutes on a CPU, and separate runs (anchors now, miStudio's recipe later) then train on identical rows."""

    def build() -> dict[str, Any]:
        rows, l0 = sample_rows(model, n, seed)
        return {"rows": rows, "l0": l0}

    saved = _cached(cache, f"{world.name}-{n}-{seed}", f"{world!r} {n} {seed}", build)
    return saved["rows"], float(saved["l0"])


# --- what every trainer returns -----------------------------------------------------------------------
@dataclass
class Trained:
    """A trained SAE seen through its own library's forward pass."""

    encode: Callable[[Tensor], Tensor]  # dense codes [n, d_sae]
    decode: Callable[[Tensor], Tensor]
    decoder: Tensor  # [d_sae, d_in]
    coefficient: float | None = None  # ReLU / JumpReLU: the sparsity coefficient it trained with
    runs: int = 1  # trainings it took (more than one when the coefficient was calibrated)


@dataclass
class Job:
    """One training: same rows, width, k and budget for every trainer."""

    train: Tensor
    d_sae: int
    k: int
    tokens: int
    seed: int
    coefficient: float | None = None  # ReLU / JumpReLU sparsity coefficient; None: the default


def _ours(architecture: str) -> Callable[[Job], Trained]:
    def run(job: Job) -> Trained:
        coefficient = {} if job.coefficient is None else {COEFFICIENTS[architecture]: job.coefficient}
        sae_cfg = SAEConfig(d_in=job.train.shape[1], d_sae=job.d_sae, k=job.k, architecture=architecture, **coefficient)
        train_cfg = TrainConfig(total_tokens=job.tokens, batch_size=BATCH, seed=job.seed, eval_tokens=0)
        with tempfile.TemporaryDirectory() as folder:
            train_sae(sae_cfg, train_cfg, TensorBatchSource(job.train, seed=job.seed), Path(folder), LocalContext())
            sae = load_any(Path(folder)).sae.eval()
        return Trained(sae.encode, sae.decode, sae.W_dec.detach(), coefficient=job.coefficient)

    return run


# --- equal L0 for the architectures whose sparsity a coefficient sets ---------------------------------
COEFFICIENTS = {"standard": "l1_coefficient", "jumprelu": "l0_coefficient"}
L0_TOLERANCE = 0.10  # a calibrated SAE's L0 is within 10% of k
CALIBRATION_RUNS = 7
CALIBRATION_ROWS = 16_384


@torch.no_grad()
def mean_l0(trained: Trained, rows: Tensor) -> float:
    """Mean number of active latents per row."""
    return sum(float((trained.encode(x) != 0).sum()) for x in rows.split(BATCH)) / len(rows)


def next_coefficient(probes: list[tuple[float, float]], target: float) -> float:
    """The coefficient to try next for L0 `target`, from (coefficient, L0) probes: log L0 taken as linear in
    log coefficient, through the closest probes on either side of the target once they exist (so the search
    cannot leave the bracket), else through the last two (slope clipped), else L0 ~ 1 / coefficient."""
    logs = [(math.log(c), math.log(max(l0, 1e-3))) for c, l0 in probes]
    goal = math.log(target)
    above = [p for p in logs if p[1] > goal]  # too dense: the coefficient must grow
    below = [p for p in logs if p[1] <= goal]
    if above and below:
        (c1, l1), (c2, l2) = max(above, key=lambda p: p[0]), min(below, key=lambda p: p[0])
        slope = (l2 - l1) / (c2 - c1) if c2 != c1 else -1.0
        step = (goal - l1) / slope if slope < 0 else 0.5 * (c2 - c1)
        return math.exp(min(max(c1 + step, c1 + 0.1 * (c2 - c1)), c2 - 0.1 * (c2 - c1)))
    slope = -1.0
    if len(logs) > 1:
        (c1, l1), (c2, l2) = logs[-2], logs[-1]
        if c2 != c1:
            slope = min(-0.2, max(-5.0, (l2 - l1) / (c2 - c1)))
    c, l0 = logs[-1]
    return math.exp(c + (goal - l0) / slope)


def _calibrated(architecture: str) -> Callable[[Job], Trained]:
    """`_ours(architecture)` with its sparsity coefficient searched (full-budget runs) until the L0 on training
    rows is within L0_TOLERANCE of k; returns the run closest to k."""

    def run(job: Job) -> Trained:
        train_one = _ours(architecture)
        probes: list[tuple[float, float]] = []
        best: tuple[float, Trained] | None = None
        coefficient = job.coefficient or 1.0
        start = time.perf_counter()
        for _ in range(CALIBRATION_RUNS):
            trained = train_one(dataclasses.replace(job, coefficient=coefficient))
            l0 = mean_l0(trained, job.train[:CALIBRATION_ROWS])
            probes.append((coefficient, l0))
            print(f"    {architecture} seed {job.seed}: coefficient {coefficient:.4g} -> L0 {l0:.2f}", flush=True)
            miss = abs(math.log(l0 / job.k)) if l0 > 0 else math.inf
            if best is None or miss < best[0]:
                best = (miss, trained)
            if abs(l0 / job.k - 1) <= L0_TOLERANCE:
                break
            coefficient = next_coefficient(probes, job.k)
        assert best is not None
        found = best[1]
        found.runs = len(probes)
        print(
            f"    {architecture} seed {job.seed}: coefficient {found.coefficient:.4g} for L0 {job.k}: "
            f"{len(probes)} runs, calibration {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        return found

    return run


class _ActivationTable(nn.Module):
    """A stand-in language model for sparsify's Trainer: 'token ids' index rows of the activation pool."""

    def __init__(self, rows: Tensor) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Embedding.from_pretrained(rows, freeze=True)])
        self.dummy_inputs = {"input_ids": torch.zeros(1, 2, dtype=torch.long)}

    @property
    def base_model(self) -> nn.Module:
        return self

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.layers[0](input_ids)


def _sparsify(job: Job) -> Trained:
    from sparsify import SaeConfig, Trainer
    from sparsify import TrainConfig as SparsifyTrainConfig
    from sparsify.sparse_coder import SparseCoder

    steps = job.tokens // BATCH
    gen = torch.Generator().manual_seed(job.seed)
    order = torch.cat(
        [torch.randperm(len(job.train), generator=gen) for _ in range(math.ceil(job.tokens / len(job.train)))]
    )
    ids = order[: steps * BATCH].view(-1, SEQ)
    dataset = [{"input_ids": row} for row in ids]
    with tempfile.TemporaryDirectory() as folder:
        cfg = SparsifyTrainConfig(
            SaeConfig(k=job.k, num_latents=job.d_sae),
            batch_size=BATCH // SEQ,
            hookpoints=["layers.0"],
            init_seeds=[job.seed],
            save_dir=folder,
            save_every=10**9,
            log_to_wandb=False,
            run_name="bench",
        )
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer = Trainer(cfg, dataset, _ActivationTable(job.train))
            trainer.fit()  # saves the schedule-free average at the end, as a user's run would
        coder = SparseCoder.load_from_disk(Path(folder) / "bench" / "layers.0")

    def encode(x: Tensor) -> Tensor:
        out = coder.encode(x)
        codes = torch.zeros(x.shape[0], coder.num_latents)
        return codes.scatter_(1, out.top_indices, out.top_acts)

    def decode(codes: Tensor) -> Tensor:
        return codes @ coder.W_dec + coder.b_dec

    with torch.no_grad():
        return Trained(lambda x: encode(x).detach(), lambda c: decode(c).detach(), coder.W_dec.detach().clone())


def _saelens(architecture: str) -> Callable[[Job], Trained]:
    def run(job: Job) -> Trained:
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.training.sae_trainer import SAETrainer

        torch.manual_seed(job.seed)
        d_in = job.train.shape[1]
        if architecture == "batchtopk":
            sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=job.d_sae, k=job.k))
        else:
            sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=job.d_sae, k=job.k))
        # The documented LanguageModelSAERunnerConfig defaults: Adam 3e-4, betas (0.9, 0.999), constant lr.
        cfg = SAETrainerConfig(
            total_training_samples=job.tokens,
            train_batch_size_samples=BATCH,
            lr=3e-4,
            lr_end=3e-4,
            logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        )
        source = TensorBatchSource(job.train, seed=job.seed)

        def batches() -> Iterator[Tensor]:
            while True:
                yield source.next_batch(BATCH)

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            SAETrainer(cfg=cfg, sae=sae, data_provider=batches(), save_checkpoint_fn=lambda _path: None).fit()
        sae.eval()
        with torch.no_grad():
            return Trained(
                lambda x: sae.encode(x).detach(), lambda c: sae.decode(c).detach(), sae.W_dec.detach().clone()
            )

    return run


TRAINERS: dict[str, Callable[[Job], Trained]] = {
    "ours-topk": _ours("topk"),
    "ours-batchtopk": _ours("batchtopk"),
    "ours-jumprelu": _calibrated("jumprelu"),
    "ours-relu": _calibrated("standard"),
    "sparsify": _sparsify,
    "saelens": _saelens("topk"),
    "saelens-batchtopk": _saelens("batchtopk"),
}
ANCHORS = ("sparsify", "saelens", "saelens-batchtopk")
DEFENDED = ("ours-topk", "ours-batchtopk")
AT_EQUAL_L0 = ("ours-jumprelu", "ours-relu")  # their EV within EV_MARGIN of miStudio's TopK at the same L0
EV_MARGIN = 0.02


# --- scoring ------------------------------------------------------------------------------------------
@dataclass
class Score:
    ev: float
    l0: float
    dead: float
    seconds: float
    mcc: float | None = None
    recovered: float | None = None


@torch.no_grad()
def score(trained: Trained, held_out: Tensor, true_features: Tensor | None, seconds: float) -> Score:
    sse = total = l0 = 0.0
    fired = torch.zeros(trained.decoder.shape[0], dtype=torch.bool)
    mean = held_out.mean(0)
    for x in held_out.split(BATCH):
        codes = trained.encode(x)
        x_hat = trained.decode(codes)
        sse += float((x - x_hat).pow(2).sum())
        total += float((x - mean).pow(2).sum())
        l0 += float((codes != 0).sum())
        fired |= (codes != 0).any(0)
    result = Score(ev=1 - sse / total, l0=l0 / len(held_out), dead=float((~fired).float().mean()), seconds=seconds)
    if true_features is not None:
        gt = score_decoder(trained.decoder, true_features)
        result.mcc, result.recovered = gt.mcc, gt.recovered
    return result


@dataclass
class Row:
    """One data set: its scores per trainer over seeds."""

    name: str
    scores: dict[str, list[Score]] = field(default_factory=dict)

    def mean(self, trainer: str, metric: str) -> float | None:
        values = [getattr(s, metric) for s in self.scores.get(trainer, [])]
        return statistics.fmean(values) if values and values[0] is not None else None

    def spread(self, trainer: str, metric: str) -> float:
        values = [getattr(s, metric) for s in self.scores.get(trainer, [])]
        return statistics.pstdev(values) if len(values) > 1 and values[0] is not None else 0.0


def _cell(row: Row, trainer: str, metric: str, digits: int = 3) -> str:
    value = row.mean(trainer, metric)
    if value is None:
        return "—"
    spread = row.spread(trainer, metric)
    return f"{value:.{digits}f}" + (f"±{spread:.{digits}f}" if spread else "")


def print_table(rows: list[Row], trainers: list[str]) -> None:
    metrics = ("mcc", "recovered", "ev", "l0", "dead", "seconds")
    print("\n| data | trainer | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for row in rows:
        for trainer in trainers:
            if trainer in row.scores:
                cells = [_cell(row, trainer, m, 1 if m in ("l0", "seconds") else 3) for m in metrics]
                print(f"| {row.name} | {trainer} | " + " | ".join(cells) + " |")


def bench_lines(rows: list[Row]) -> list[str]:
    """miStudio's TopK / BatchTopK against the best anchor on every row (MCC, recovered, EV), and dead <= 3%;
    JumpReLU / ReLU (calibrated to TopK's L0) within EV_MARGIN of TopK's EV."""
    lines = []
    for row in rows:
        anchors = [a for a in ANCHORS if a in row.scores]
        for ours in (t for t in DEFENDED if t in row.scores):
            for metric in ("mcc", "recovered", "ev"):
                best = max((row.mean(a, metric) for a in anchors if row.mean(a, metric) is not None), default=None)
                value = row.mean(ours, metric)
                if best is None or value is None:
                    continue
                ok = "ok" if value >= best - 1e-9 else "short"
                lines.append(f"BENCH quality_{row.name}_{ours}_{metric} {value:.4f} {metric} goal >= {best:.4f} {ok}")
            dead = row.mean(ours, "dead")
            ok = "ok" if dead <= 0.03 else "short"
            lines.append(f"BENCH quality_{row.name}_{ours}_dead {dead:.4f} fraction goal <= 0.03 {ok}")
        topk = row.mean("ours-topk", "ev")
        for other in (t for t in AT_EQUAL_L0 if t in row.scores and topk is not None):
            gap = (row.mean(other, "ev") or 0.0) - topk
            ok = "ok" if gap >= -EV_MARGIN - 1e-9 else "short"
            lines.append(f"BENCH quality_{row.name}_{other}_ev_minus_topk {gap:.4f} ev goal >= {-EV_MARGIN} {ok}")
    return lines


# --- real activations ---------------------------------------------------------------------------------
def _texts(kind: str, limit: int) -> list[str]:
    """Two different kinds of text found on any machine: Python docstrings, and package descriptions (prose)."""
    if kind == "docstrings":
        from mistudio_tui.ml.sample.corpus import build_corpus, read_corpus

        with tempfile.TemporaryDirectory() as folder:
            build_corpus(Path(folder) / "docs.jsonl")
            return read_corpus(Path(folder) / "docs.jsonl")[:limit]
    import importlib.metadata

    texts = []
    for dist in importlib.metadata.distributions():
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else None
        body = body or dist.metadata.get("Description") or ""
        texts.extend(p for p in body.split("\n\n") if len(p) > 200)
    return texts[:limit]


def real_sets(model_dir: Path, tokens: int) -> dict[str, Tensor]:
    """Residual activations of two layers of a pretrained model on two kinds of text (padding dropped)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    n_layers = model.config.num_hidden_layers
    plan = {
        f"real-L{n_layers // 2}-docstrings": (n_layers // 2, "docstrings"),
        f"real-L{n_layers - 1}-prose": (n_layers - 1, "prose"),
    }
    out = {}
    for name, (layer, kind) in plan.items():
        rows, have, texts = [], 0, _texts(kind, 20_000)
        for start in range(0, len(texts), 32):
            batch = texts[start : start + 32]
            if not batch or have >= tokens:
                break
            enc = tokenizer(batch, truncation=True, max_length=128, padding=True, return_tensors="pt")
            with torch.no_grad():
                hidden = model(**enc, output_hidden_states=True).hidden_states[layer]
            keep = hidden[enc["attention_mask"].bool()]
            rows.append(keep)
            have += len(keep)
        out[name] = torch.cat(rows)[:tokens].float()
        print(f"{name}: {len(out[name]):,} rows of d_in {out[name].shape[1]}")
    return out


def cached_real_sets(model_dir: Path, tokens: int, cache: Path | None) -> dict[str, Tensor]:
    """`real_sets`, kept in `cache` (keyed by the model folder and the token count): a CPU forward pass over the
    texts takes minutes, and separate runs then train on identical rows."""
    sets: dict[str, Tensor] = _cached(
        cache, f"real-{tokens}", f"{model_dir.resolve()} {tokens}", lambda: real_sets(model_dir, tokens)
    )
    return sets


# --- main ---------------------------------------------------------------------------------------------
def run_row(
    name: str,
    train: Tensor,
    held_out: Tensor,
    true: Tensor | None,
    d_sae: int,
    k: int,
    tokens: int,
    trainers: list[str],
    seeds: list[int],
) -> Row:
    row = Row(name)
    for trainer in trainers:
        for seed in seeds:
            start = time.perf_counter()
            trained = TRAINERS[trainer](Job(train, d_sae, k, tokens, seed))
            result = score(trained, held_out, true, time.perf_counter() - start)
            row.scores.setdefault(trainer, []).append(result)
            gt = f" mcc {result.mcc:.3f} recovered {result.recovered:.3f}" if result.mcc is not None else ""
            calibrated = (
                f", coefficient {trained.coefficient:.4g}, {trained.runs} runs"
                if trained.coefficient is not None
                else ""
            )
            print(
                f"  {name} {trainer} seed {seed}:{gt} ev {result.ev:.3f} l0 {result.l0:.1f} "
                f"dead {result.dead:.3f} ({result.seconds:.0f} s{calibrated})",
                flush=True,
            )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small world, one seed, TopK vs the anchors")
    parser.add_argument("--worlds", default="base,sparse16x,dense4x,absorb", help=f"some of {', '.join(WORLDS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tokens", type=int, default=None, help="training tokens per SAE (default: the world's)")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help=f"some of {', '.join(TRAINERS)}")
    parser.add_argument("--real-model", type=Path, default=None, help="a pretrained HF model folder for real sets")
    parser.add_argument("--real-tokens", type=int, default=1_000_000)
    parser.add_argument("--real-k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cache", type=Path, default=None, help="keep sampled worlds and real sets here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    worlds = ["quick"] if args.quick else [w.strip() for w in args.worlds.split(",") if w.strip()]
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    trainers = "ours-topk,ours-batchtopk,sparsify,saelens" if args.quick else args.trainers
    trainers = [t.strip() for t in trainers.split(",") if t.strip()]
    for name in worlds:
        if name not in WORLDS:
            parser.error(f"--worlds: unknown world {name!r}; expected some of {', '.join(WORLDS)}")
    for name in trainers:
        if name not in TRAINERS:
            parser.error(f"--trainers: unknown trainer {name!r}; expected some of {', '.join(TRAINERS)}")
    started = time.perf_counter()
    rows = []
    for name in worlds:
        world = WORLDS[name]
        model = world.build()
        tokens = args.tokens or world.tokens
        t0 = time.perf_counter()
        train, _ = cached_rows(model, world, min(tokens, 2_000_000), 1, args.cache)
        held_out, true_l0 = cached_rows(model, world, HELD_OUT, 2, args.cache)
        k = max(1, round(true_l0))
        true = model.feature_dict.feature_vectors.detach().float()
        print(
            f"world {name}: {world.features} features in {world.dim} dims, true L0 {true_l0:.1f} -> k {k}, "
            f"width {world.width}, {tokens:,} tokens ({len(train):,} distinct; sampled in "
            f"{time.perf_counter() - t0:.0f} s) — {world.note}",
            flush=True,
        )
        rows.append(run_row(name, train, held_out, true, world.width, k, tokens, trainers, seeds))
    if args.real_model is not None and not args.quick:
        for name, data in cached_real_sets(args.real_model, args.real_tokens + HELD_OUT, args.cache).items():
            d_in = data.shape[1]
            rows.append(
                run_row(
                    name,
                    data[:-HELD_OUT],
                    data[-HELD_OUT:],
                    None,
                    8 * d_in,
                    args.real_k,
                    args.tokens or 2_000_000,
                    trainers,
                    seeds,
                )
            )
    print_table(rows, trainers)
    for line in bench_lines(rows):
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
