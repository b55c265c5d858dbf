"""Several SAEs from one forward pass: each equals the SAE trained alone on the same activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.jobs.tasks.train_multi import stream_sources
from mistudio_tui.ml.activations.streaming import ActivationStream, ModelActivationSource
from mistudio_tui.ml.data.token_store import TokenStore, TokenStoreWriter
from mistudio_tui.ml.models.loading import LoadedModel, load_model
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.formats import load_saelens
from mistudio_tui.ml.sae.multi import Member, TaggedContext, train_multi
from mistudio_tui.ml.sae.trainer import train_sae

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
BUFFER = 256


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_lm_dir: Path) -> LoadedModel:
    return load_model(tiny_lm_dir, device="cpu")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel, tiny_corpus: list[str]) -> TokenStore:
    tok = loaded.tokenizer
    ids: list[int] = []
    for text in tiny_corpus * 2:
        ids += [*tok(text)["input_ids"], tok.eos_token_id]
    folder = tmp_path_factory.mktemp("tokens")
    rows = [[tok.bos_token_id, *ids[start : start + 23]] for start in range(0, len(ids) - 23, 23)]
    writer = TokenStoreWriter(folder, 24)
    writer.append(np.array(rows), np.full(len(rows), 24))
    writer.close({"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "vocab_size": len(tok)})
    return TokenStore(folder)


def train_cfg(**overrides: object) -> TrainConfig:
    base = {
        "total_tokens": 64 * 12,
        "batch_size": 64,
        "lr": 3e-3,
        "init_tokens": 128,
        "eval_tokens": 0,
        "metrics_every": 4,
        "density_hist_every": 6,
        "checkpoint_every": 6,
        "device": "cpu",
        "seed": 3,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def sae_cfg(k: int = 4) -> SAEConfig:
    return SAEConfig(d_in=32, architecture="topk", d_sae=64, k=k)


def stream(loaded: LoadedModel, tokens: TokenStore, hooks: list[str]) -> ActivationStream:
    return ActivationStream(loaded, tokens, hooks, seed=3, buffer_tokens=BUFFER, batch_size=4)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in load_saelens(folder)[0].state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        # Same rows in the same order through the same CPU kernels: only summation order could differ.
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_each_hook_equals_its_sae_trained_alone(tmp_path: Path, loaded: LoadedModel, tokens: TokenStore) -> None:
    shared = stream(loaded, tokens, HOOKS)
    members = [
        Member(tag=i + 10, label=hook, sae_cfg=sae_cfg(), source=src, out_dir=tmp_path / f"group-{i}")
        for i, (hook, src) in enumerate(zip(HOOKS, stream_sources(shared, HOOKS), strict=True))
    ]
    ctx = LocalContext()
    summaries = train_multi(members, train_cfg(), ctx)
    assert set(summaries) == {10, 11}
    forward_batches = shared.forward_batches

    for i, hook in enumerate(HOOKS):
        alone = ModelActivationSource(loaded, tokens, hook, seed=3, buffer_tokens=BUFFER, batch_size=4)
        solo = train_sae(sae_cfg(), train_cfg(), alone, tmp_path / f"alone-{i}", LocalContext())
        assert summaries[i + 10]["steps"] == solo["steps"] == 12
        assert_same_weights(weights(tmp_path / f"group-{i}"), weights(tmp_path / f"alone-{i}"))
        # One forward pass fed both SAEs: the group ran no more model batches than one SAE alone.
        assert alone.stream.forward_batches == forward_batches

    rows = ctx.metric_rows
    assert {r["training_id"] for r in rows} == {10, 11}
    assert sorted(r["step"] for r in rows if r["training_id"] == 10) == [4, 8, 12]
    checkpoints = [a for a in ctx.artifacts if a.kind == "checkpoint"]
    assert {a.meta["training_id"] for a in checkpoints} == {10, 11}
    assert all(str(a.path).startswith(str(tmp_path / "group-")) for a in checkpoints)


def test_two_configs_on_one_hook_share_the_windows(tmp_path: Path, loaded: LoadedModel, tokens: TokenStore) -> None:
    hook = HOOKS[1]
    shared = stream(loaded, tokens, [hook])
    sources = stream_sources(shared, [hook, hook])
    assert sources[0] is not sources[1]
    members = [
        Member(tag=k, label=f"k{k}", sae_cfg=sae_cfg(k), source=src, out_dir=tmp_path / f"k{k}")
        for k, src in zip((2, 8), sources, strict=True)
    ]
    train_multi(members, train_cfg(), LocalContext())
    for k in (2, 8):
        alone = ModelActivationSource(loaded, tokens, hook, seed=3, buffer_tokens=BUFFER, batch_size=4)
        train_sae(sae_cfg(k), train_cfg(), alone, tmp_path / f"alone-k{k}", LocalContext())
        assert_same_weights(weights(tmp_path / f"k{k}"), weights(tmp_path / f"alone-k{k}"))


def test_cancelled_group_resumes_to_the_uninterrupted_result(
    tmp_path: Path, loaded: LoadedModel, tokens: TokenStore
) -> None:
    def members(prefix: str, shared: ActivationStream) -> list[Member]:
        return [
            Member(tag=i, label=h, sae_cfg=sae_cfg(), source=s, out_dir=tmp_path / f"{prefix}-{i}")
            for i, (h, s) in enumerate(zip(HOOKS, stream_sources(shared, HOOKS), strict=True))
        ]

    train_multi(members("full", stream(loaded, tokens, HOOKS)), train_cfg(), LocalContext())
    with pytest.raises(JobCancelled):
        train_multi(members("cut", stream(loaded, tokens, HOOKS)), train_cfg(), LocalContext(cancel_after=5))
    assert not (tmp_path / "cut-0" / "cfg.json").exists()
    ctx = LocalContext()
    train_multi(members("cut", stream(loaded, tokens, HOOKS)), train_cfg(), ctx, resume=True)
    assert any("resumed from" in line for line in ctx.logs)
    for i in range(len(HOOKS)):
        assert_same_weights(weights(tmp_path / f"cut-{i}"), weights(tmp_path / f"full-{i}"))


def test_tagged_context_tags_rows_and_forwards_cancel() -> None:
    parent = LocalContext()
    child = TaggedContext(parent, 7, "blocks.0")
    child.metric(3, loss=1.0)
    child.progress(1, 2)
    child.log("hello")
    assert parent.metric_rows == [{"step": 3, "loss": 1.0, "training_id": 7}]
    assert parent.logs == ["[blocks.0] hello"]
    parent.cancel()
    with pytest.raises(JobCancelled):
        child.check_cancelled()


def test_bad_groups_are_refused(tmp_path: Path, loaded: LoadedModel, tokens: TokenStore) -> None:
    src = stream(loaded, tokens, HOOKS[:1]).source(HOOKS[0])
    with pytest.raises(ValueError, match="unique"):
        train_multi(
            [Member(1, "a", sae_cfg(), src, tmp_path / "a"), Member(1, "b", sae_cfg(), src, tmp_path / "b")],
            train_cfg(),
            LocalContext(),
        )
    with pytest.raises(ValueError, match="own output folder"):
        train_multi(
            [Member(1, "a", sae_cfg(), src, tmp_path / "a"), Member(2, "b", sae_cfg(), src, tmp_path / "a")],
            train_cfg(),
            LocalContext(),
        )


def test_group_job_rows_and_states_go_to_each_training(studio) -> None:
    from mistudio_tui.db.models import Job, Training, TrainingMetric
    from mistudio_tui.jobs.kinds import train as train_kind
    from mistudio_tui.jobs.kinds.train import ActivationsSource, GroupMember, MultiTrainParams

    runs = [Training.create(name=f"g-{i}", hook_name=h, group_name="g", path=f"/x/{i}") for i, h in enumerate(HOOKS)]
    members = [
        GroupMember(training_id=t.id, hook=t.hook_name, sae=SAEConfig(d_in=8), out_dir=Path(t.path)) for t in runs
    ]
    params = MultiTrainParams(members=tuple(members), train=TrainConfig(), source=ActivationsSource(dir=Path("/x")))
    job = Job.create(
        kind="train.multi",
        status="running",
        resource_type="training",
        resource_id=runs[0].id,
        params=params.to_json(),
    )
    train_kind.train_multi_start(job)
    assert {t.status for t in Training.select()} == {"running"}
    train_kind.train_metrics(job, [{"step": 2, "loss": 1.0, "training_id": runs[1].id}, {"step": 2, "loss": 3.0}])
    by_run = {m.training_id: m.loss for m in TrainingMetric.select()}
    assert by_run == {runs[1].id: 1.0, runs[0].id: 3.0}  # untagged rows belong to the job's own run

    result = {"checkpoints": {str(runs[0].id): 4, str(runs[1].id): None}}
    train_kind.finish_train_multi(job, "cancelled", result)
    assert [Training.get_by_id(t.id).status for t in runs] == ["paused", "cancelled"]
    done = {"trainings": {str(t.id): {"resource": {"loss": 0.5 + t.id, "steps": 9}} for t in runs}}
    train_kind.finish_train_multi(job, "completed", done)
    assert [(Training.get_by_id(t.id).status, Training.get_by_id(t.id).loss) for t in runs] == [
        ("completed", 0.5 + t.id) for t in runs
    ]


def test_service_creates_one_training_per_hook_and_variant(studio) -> None:
    from mistudio_tui.db.models import Training
    from mistudio_tui.services.multi_training import new_multi_training, parse_variants, resume_group
    from tests.ui.populate import populate

    populate(studio.paths.home)
    hook = "blocks.0.hook_resid_post"
    spec = new_multi_training(
        studio,
        [hook],
        activations_ref="tiny-L0-resid_post",
        configs=parse_variants("k=4;k=8,expansion=4"),
        total_tokens=1000,
        batch_size=100,
    )
    assert spec.kind == "train.multi" and spec.params.source.type == "activations"
    runs = list(Training.select().where(Training.group_name == spec.resource.group_name).order_by(Training.id))
    assert [(t.hook_name, t.config["sae"]["k"], t.d_sae) for t in runs] == [(hook, 4, 256), (hook, 8, 128)]
    assert [m.training_id for m in spec.params.members] == [t.id for t in runs]
    assert len({m.out_dir for m in spec.params.members}) == 2

    streamed = new_multi_training(
        studio,
        [hook, "blocks.1.hook_resid_post"],
        model_ref="tiny-gpt2",
        tokenization_ref="tiny-stories-ctx64",
        total_tokens=1000,
    )
    assert streamed.params.source.type == "stream" and len(streamed.params.members) == 2

    with pytest.raises(ValueError, match=r"has no hook blocks\.9\.hook_resid_post"):
        new_multi_training(studio, ["blocks.9.hook_resid_post"], activations_ref="tiny-L0-resid_post")
    with pytest.raises(ValueError, match="share batch_size"):
        new_multi_training(
            studio, [hook], activations_ref="tiny-L0-resid_post", configs=[{"k": 4}, {"k": 8, "batch_size": 7}]
        )
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_variants("k=4;width=3")
    with pytest.raises(ValueError, match="either --activations or --model"):
        new_multi_training(studio, [hook], activations_ref="x", model_ref="y", tokenization_ref="z")
    for t in runs:
        t.status = "paused"
        t.save()
    resumed = resume_group(spec.resource.group_name)
    assert resumed.params.resume and [m.training_id for m in resumed.params.members] == [t.id for t in runs]
