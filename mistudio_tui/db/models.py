"""Peewee models: metadata, metrics, labels and job state. Big arrays live in files, never in rows."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    JSONField,
    Model,
    ModelSelect,
    TextField,
)

from mistudio_tui.db.home_params import HomeParamsField
from mistudio_tui.db.home_paths import HomePathField

database = DatabaseProxy()


def utcnow() -> dt.datetime:
    """Naive UTC now (SQLite stores no zone)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# A name that reads as an id ("12", "#12"): ids win when a reference is resolved, so such a name could never be used
# (and once hid the row with that id); it is refused wherever a name is set.
ID_LIKE = re.compile(r"#?[0-9]+")


def refuse_id_like_name(name: str) -> None:
    """ValueError if `name` is all digits (optionally after '#'), which every command reads as an id."""
    if ID_LIKE.fullmatch(name.strip()):
        raise ValueError(f"the name {name!r} is all digits, which reads as an id; choose a name with a letter in it")


class BaseModel(Model):
    # The primary key peewee would add implicitly, declared so the type checker knows every row has an `id`.
    # Likewise each `x = ForeignKeyField(...)` below is followed by `x_id: int`, the raw-id accessor peewee adds:
    # an annotation only (no value), which peewee ignores.
    id = AutoField()

    class Meta:
        database = database
        legacy_table_names = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        """Refuse a new or changed id-like name (rows loaded with one, from before the rule, still save)."""
        if (
            "name" in self._meta.fields
            and "name" in self.dirty_field_names
            and isinstance(self.__data__.get("name"), str)
        ):
            refuse_id_like_name(self.__data__["name"])
        return super().save(*args, **kwargs)


class Job(BaseModel):
    """One unit of background work run by a worker process."""

    kind = CharField(index=True)
    title = CharField(default="")
    status = CharField(default="queued", index=True)
    params = HomeParamsField(default=dict)  # path entries relative to the home (migration 0011)
    result = JSONField(null=True)
    progress_done = FloatField(default=0.0)
    progress_total = FloatField(null=True)
    progress_text = CharField(default="")
    progress_unit = CharField(default="")
    pid = IntegerField(null=True)
    runner_pid = IntegerField(null=True)
    device = CharField(null=True)
    log_path = HomePathField(null=True)
    exit_code = IntegerField(null=True)
    error = TextField(null=True)
    traceback = TextField(null=True)
    resource_type = CharField(null=True)
    resource_id = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)


class Dataset(BaseModel):
    """A text corpus ingested under MISTUDIO_HOME/datasets."""

    name = CharField(unique=True)
    source_type = CharField(default="local")  # local | hub | sample
    source = TextField(default="")
    hub_config = CharField(null=True)
    hub_split = CharField(null=True)
    text_field = CharField(null=True)
    cleaning = JSONField(default=dict)
    path = HomePathField(default="")
    status = CharField(default="pending", index=True)
    n_documents = IntegerField(default=0)
    n_chars = IntegerField(default=0)
    stats = JSONField(null=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)
    tokenizations: ModelSelect[Tokenization]  # the backref of Tokenization.dataset


class LanguageModel(BaseModel):
    """A transformer model registered from the hub or a local folder."""

    name = CharField(unique=True)
    source_type = CharField(default="local")  # local | hub | sample
    source = TextField(default="")
    revision = CharField(null=True)
    path = HomePathField(default="")
    dtype = CharField(default="float32")
    quantization = CharField(null=True)
    trust_remote_code = BooleanField(default=False)
    model_type = CharField(null=True)
    family = CharField(null=True)
    d_model = IntegerField(null=True)
    n_layers = IntegerField(null=True)
    n_params = IntegerField(null=True)
    vocab_size = IntegerField(null=True)
    is_causal_lm = BooleanField(default=True)
    architecture = JSONField(null=True)
    status = CharField(default="pending", index=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)

    @property
    def reference(self) -> str:
        """What loads this model: its hub id, or the folder it is in now (a local or sample model's `source` is
        where it was registered from, which a moved home leaves behind)."""
        return self.source if self.source_type == "hub" else (self.path or self.source)


class Tokenization(BaseModel):
    """One tokenization of a dataset (several per dataset): tokenizer, context size, packing."""

    dataset = ForeignKeyField(Dataset, backref="tokenizations", on_delete="CASCADE")
    dataset_id: int
    model = ForeignKeyField(LanguageModel, null=True, backref="tokenizations", on_delete="SET NULL")
    model_id: int | None
    name = CharField(unique=True)
    tokenizer = TextField(default="")
    context_size = IntegerField(default=128)
    prepend_bos = BooleanField(default=True)
    packing = BooleanField(default=True)
    separator = CharField(default="eos")
    max_tokens = IntegerField(null=True)
    n_tokens = IntegerField(default=0)
    n_sequences = IntegerField(default=0)
    path = HomePathField(default="")
    status = CharField(default="pending", index=True)
    stats = JSONField(null=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)


class ExtractionTemplate(BaseModel):
    """A reusable activation-extraction configuration."""

    name = CharField(unique=True)
    description = TextField(default="")
    config = JSONField(default=dict)
    favourite = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class ActivationSet(BaseModel):
    """Activations of one or more hook points, stored as safetensors shards."""

    name = CharField(unique=True)
    model = ForeignKeyField(LanguageModel, null=True, backref="activation_sets", on_delete="CASCADE")
    model_id: int | None
    tokenization = ForeignKeyField(Tokenization, null=True, backref="activation_sets", on_delete="CASCADE")
    tokenization_id: int | None
    hooks = JSONField(default=list)
    d_in = IntegerField(null=True)
    dtype = CharField(default="float32")
    n_tokens = IntegerField(default=0)
    context_size = IntegerField(null=True)
    path = HomePathField(default="")
    manifest = JSONField(null=True)
    origin = CharField(default="extracted")  # extracted | imported | synthetic
    status = CharField(default="pending", index=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)


class TrainingTemplate(BaseModel):
    """A reusable SAE training configuration."""

    name = CharField(unique=True)
    description = TextField(default="")
    config = JSONField(default=dict)
    favourite = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class Sweep(BaseModel):
    """A hyperparameter sweep: a family of trainings."""

    name = CharField(unique=True)
    method = CharField(default="grid")
    space = JSONField(default=dict)
    base_config = JSONField(default=dict)
    status = CharField(default="pending")
    created_at = DateTimeField(default=utcnow)


class Training(BaseModel):
    """An SAE: trained here (with its run state and metrics) or imported from another tool."""

    name = CharField(unique=True)
    activation_set = ForeignKeyField(ActivationSet, null=True, backref="trainings", on_delete="CASCADE")
    activation_set_id: int | None
    model = ForeignKeyField(LanguageModel, null=True, backref="trainings", on_delete="CASCADE")
    model_id: int | None
    tokenization = ForeignKeyField(Tokenization, null=True, on_delete="SET NULL")
    tokenization_id: int | None
    sweep = ForeignKeyField(Sweep, null=True, backref="trainings", on_delete="SET NULL")
    sweep_id: int | None
    origin = CharField(default="trained")  # trained | imported
    architecture = CharField(default="topk")
    hook_name = CharField(null=True)
    d_in = IntegerField(null=True)
    d_sae = IntegerField(null=True)
    config = JSONField(default=dict)
    status = CharField(default="pending", index=True)
    steps = IntegerField(default=0)
    tokens = IntegerField(default=0)
    total_tokens = IntegerField(null=True)
    loss = FloatField(null=True)
    l0 = FloatField(null=True)
    explained_variance = FloatField(null=True)
    dead_fraction = FloatField(null=True)
    tokens_per_s = FloatField(null=True)
    device = CharField(null=True)
    path = HomePathField(default="")
    group_name = CharField(null=True)
    tags = CharField(default="")
    evaluation = JSONField(null=True)
    density_histogram = JSONField(null=True)  # latest {step, tokens, edges, counts} (migration 0005)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)


class TrainingMetric(BaseModel):
    """One (possibly downsampled) point of a training curve; `span` raw points merged into it."""

    training = ForeignKeyField(Training, backref="metrics", on_delete="CASCADE", index=False)  # (training, step)
    training_id: int
    step = IntegerField()
    tokens = IntegerField(null=True)
    loss = FloatField(null=True)
    mse = FloatField(null=True)
    nmse = FloatField(null=True)
    explained_variance = FloatField(null=True)
    l0 = FloatField(null=True)
    l1 = FloatField(null=True)
    dead_fraction = FloatField(null=True)
    dense_fraction = FloatField(null=True)
    lr = FloatField(null=True)
    tokens_per_s = FloatField(null=True)
    aux_loss = FloatField(null=True)
    sparsity_loss = FloatField(null=True)
    span = IntegerField(default=1)
    envelope = JSONField(null=True)  # {metric: [min, max]} over the merged raw points

    class Meta:
        indexes = ((("training", "step"), True),)


class FeatureSet(BaseModel):
    """Per-feature statistics and examples of an SAE over some tokens (arrays in files)."""

    name = CharField(unique=True)
    training = ForeignKeyField(Training, backref="feature_sets", on_delete="CASCADE")
    training_id: int
    tokenization = ForeignKeyField(Tokenization, null=True, on_delete="SET NULL")
    tokenization_id: int | None
    d_sae = IntegerField(default=0)
    n_tokens = IntegerField(default=0)
    n_alive = IntegerField(default=0)
    path = HomePathField(default="")
    config = JSONField(default=dict)
    status = CharField(default="pending", index=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)


BROWSE_FLAGS = ("dead", "bookmarked", "labelled")  # the filter flags every browse index of Feature carries


class Feature(BaseModel):
    """One latent of a feature set: the columns the browser sorts and filters on."""

    feature_set = ForeignKeyField(FeatureSet, backref="features", on_delete="CASCADE")
    feature_set_id: int
    index = IntegerField()  # type: ignore[assignment]  # the column is "index"; it shadows Model.index(), unused here
    density = FloatField(default=0.0)
    mean_activation = FloatField(default=0.0)
    max_activation = FloatField(default=0.0)
    top_tokens = TextField(default="")
    technical_label = TextField(default="")
    semantic_label = TextField(default="")
    label_score = FloatField(null=True)
    dead = BooleanField(default=False)
    bookmarked = BooleanField(default=False)
    labelled = BooleanField(default=False)  # semantic_label != '', kept so by triggers (migration 0012)

    class Meta:
        indexes = (
            (("feature_set", "index"), True),
            # browse indexes (migrations 0010, 0012): each sort order carries the filter columns, so counts read no rows
            (("feature_set", "density", "index", *BROWSE_FLAGS, "max_activation", "label_score"), False),
            (("feature_set", "max_activation", "index", *BROWSE_FLAGS, "density", "label_score"), False),
            (("feature_set", "label_score", "index", *BROWSE_FLAGS, "density", "max_activation"), False),
            (("feature_set", "index", *BROWSE_FLAGS, "density", "max_activation", "label_score"), False),
            (
                ("feature_set", "semantic_label", "index", *BROWSE_FLAGS, "density", "max_activation", "label_score"),
                False,
            ),
        )


class LabelingJob(BaseModel):
    """One auto-labeling run over a feature set (settings without the API key)."""

    feature_set = ForeignKeyField(FeatureSet, backref="labeling_jobs", on_delete="CASCADE")
    feature_set_id: int
    endpoint = TextField(default="")
    model = CharField(default="")
    settings = JSONField(default=dict)
    status = CharField(default="pending", index=True)
    features_total = IntegerField(default=0)
    features_done = IntegerField(default=0)
    features_failed = IntegerField(default=0)
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    cost = FloatField(null=True)
    error = TextField(null=True)
    job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
    job_id: int | None
    created_at = DateTimeField(default=utcnow)


class FeatureLabel(BaseModel):
    """A label of an SAE latent; keyed by SAE and index so re-extraction never loses it."""

    training = ForeignKeyField(Training, backref="labels", on_delete="CASCADE")
    training_id: int
    feature_index = IntegerField()
    technical = TextField(default="")
    semantic = TextField(default="")
    method = CharField(default="manual")  # manual | tokens | llm
    model = CharField(null=True)
    prompt_version = CharField(null=True)
    labeling_job = ForeignKeyField(LabelingJob, null=True, backref="labels", on_delete="SET NULL")
    labeling_job_id: int | None
    score = FloatField(null=True)
    score_details = JSONField(null=True)
    is_current = BooleanField(default=False)
    author = CharField(default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("training", "feature_index"), False),)


class SteeringPreset(BaseModel):
    """A saved steering configuration (features, strengths, method, sampling)."""

    name = CharField(unique=True)
    training = ForeignKeyField(Training, null=True, on_delete="CASCADE")
    training_id: int | None
    config = JSONField(default=dict)
    created_at = DateTimeField(default=utcnow)


ALL_MODELS: list[type[BaseModel]] = [
    Job,
    Dataset,
    LanguageModel,
    Tokenization,
    ExtractionTemplate,
    ActivationSet,
    TrainingTemplate,
    Sweep,
    Training,
    TrainingMetric,
    FeatureSet,
    Feature,
    LabelingJob,
    FeatureLabel,
    SteeringPreset,
]
