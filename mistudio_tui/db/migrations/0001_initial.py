"""0001: the initial schema (frozen copy; Python-side defaults live in db/models.py)."""

from peewee import *
from playhouse.migrations import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    class Job(Model):
        kind = CharField(index=True)
        title = CharField(default="")
        status = CharField(index=True, default="queued")
        params = JSONField(default=dict)
        result = JSONField(null=True)
        progress_done = FloatField(default=0.0)
        progress_total = FloatField(null=True)
        progress_text = CharField(default="")
        progress_unit = CharField(default="")
        pid = IntegerField(null=True)
        runner_pid = IntegerField(null=True)
        device = CharField(null=True)
        log_path = CharField(null=True)
        exit_code = IntegerField(null=True)
        error = TextField(null=True)
        traceback = TextField(null=True)
        resource_type = CharField(null=True)
        resource_id = IntegerField(null=True)
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "job"

    db.create_tables([Job])

    class LanguageModel(Model):
        name = CharField(unique=True)
        source_type = CharField(default="local")
        source = TextField(default="")
        revision = CharField(null=True)
        path = TextField(default="")
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
        status = CharField(index=True, default="pending")
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "language_model"

    db.create_tables([LanguageModel])

    class Dataset(Model):
        name = CharField(unique=True)
        source_type = CharField(default="local")
        source = TextField(default="")
        hub_config = CharField(null=True)
        hub_split = CharField(null=True)
        text_field = CharField(null=True)
        cleaning = JSONField(default=dict)
        path = TextField(default="")
        status = CharField(index=True, default="pending")
        n_documents = IntegerField(default=0)
        n_chars = IntegerField(default=0)
        stats = JSONField(null=True)
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "dataset"

    db.create_tables([Dataset])

    class Tokenization(Model):
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE")
        model = ForeignKeyField(LanguageModel, null=True, on_delete="SET NULL")
        name = CharField(unique=True)
        tokenizer = TextField(default="")
        context_size = IntegerField(default=128)
        prepend_bos = BooleanField(default=True)
        packing = BooleanField(default=True)
        separator = CharField(default="eos")
        max_tokens = IntegerField(null=True)
        n_tokens = IntegerField(default=0)
        n_sequences = IntegerField(default=0)
        path = TextField(default="")
        status = CharField(index=True, default="pending")
        stats = JSONField(null=True)
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "tokenization"

    db.create_tables([Tokenization])

    class ActivationSet(Model):
        name = CharField(unique=True)
        model = ForeignKeyField(LanguageModel, null=True, on_delete="CASCADE")
        tokenization = ForeignKeyField(Tokenization, null=True, on_delete="CASCADE")
        hooks = JSONField(default=list)
        d_in = IntegerField(null=True)
        dtype = CharField(default="float32")
        n_tokens = IntegerField(default=0)
        context_size = IntegerField(null=True)
        path = TextField(default="")
        manifest = JSONField(null=True)
        origin = CharField(default="extracted")
        status = CharField(index=True, default="pending")
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "activation_set"

    db.create_tables([ActivationSet])

    class ExtractionTemplate(Model):
        name = CharField(unique=True)
        description = TextField(default="")
        config = JSONField(default=dict)
        favourite = BooleanField(default=False)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "extraction_template"

    db.create_tables([ExtractionTemplate])

    class Sweep(Model):
        name = CharField(unique=True)
        method = CharField(default="grid")
        space = JSONField(default=dict)
        base_config = JSONField(default=dict)
        status = CharField(default="pending")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "sweep"

    db.create_tables([Sweep])

    class Training(Model):
        name = CharField(unique=True)
        activation_set = ForeignKeyField(ActivationSet, null=True, on_delete="CASCADE")
        model = ForeignKeyField(LanguageModel, null=True, on_delete="CASCADE")
        tokenization = ForeignKeyField(Tokenization, null=True, on_delete="SET NULL")
        sweep = ForeignKeyField(Sweep, null=True, on_delete="SET NULL")
        origin = CharField(default="trained")
        architecture = CharField(default="topk")
        hook_name = CharField(null=True)
        d_in = IntegerField(null=True)
        d_sae = IntegerField(null=True)
        config = JSONField(default=dict)
        status = CharField(index=True, default="pending")
        steps = IntegerField(default=0)
        tokens = IntegerField(default=0)
        total_tokens = IntegerField(null=True)
        loss = FloatField(null=True)
        l0 = FloatField(null=True)
        explained_variance = FloatField(null=True)
        dead_fraction = FloatField(null=True)
        tokens_per_s = FloatField(null=True)
        device = CharField(null=True)
        path = TextField(default="")
        group_name = CharField(null=True)
        tags = CharField(default="")
        evaluation = JSONField(null=True)
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()
        finished_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "training"

    db.create_tables([Training])

    class FeatureSet(Model):
        name = CharField(unique=True)
        training = ForeignKeyField(Training, on_delete="CASCADE")
        tokenization = ForeignKeyField(Tokenization, null=True, on_delete="SET NULL")
        d_sae = IntegerField(default=0)
        n_tokens = IntegerField(default=0)
        n_alive = IntegerField(default=0)
        path = TextField(default="")
        config = JSONField(default=dict)
        status = CharField(index=True, default="pending")
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "feature_set"

    db.create_tables([FeatureSet])

    class Feature(Model):
        feature_set = ForeignKeyField(FeatureSet, on_delete="CASCADE")
        index = IntegerField()  # type: ignore[assignment]  # the column is "index"; it shadows Model.index()
        density = FloatField(index=True, default=0.0)
        mean_activation = FloatField(default=0.0)
        max_activation = FloatField(index=True, default=0.0)
        top_tokens = TextField(default="")
        technical_label = TextField(default="")
        semantic_label = TextField(default="")
        label_score = FloatField(index=True, null=True)
        dead = BooleanField(default=False)
        bookmarked = BooleanField(default=False)

        class Meta:
            database = db
            table_name = "feature"
            indexes = ((("feature_set", "index"), True),)

    db.create_tables([Feature])

    class LabelingJob(Model):
        feature_set = ForeignKeyField(FeatureSet, on_delete="CASCADE")
        endpoint = TextField(default="")
        model = CharField(default="")
        settings = JSONField(default=dict)
        status = CharField(index=True, default="pending")
        features_total = IntegerField(default=0)
        features_done = IntegerField(default=0)
        features_failed = IntegerField(default=0)
        prompt_tokens = IntegerField(default=0)
        completion_tokens = IntegerField(default=0)
        cost = FloatField(null=True)
        error = TextField(null=True)
        job = ForeignKeyField(Job, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "labeling_job"

    db.create_tables([LabelingJob])

    class FeatureLabel(Model):
        training = ForeignKeyField(Training, on_delete="CASCADE")
        feature_index = IntegerField()
        technical = TextField(default="")
        semantic = TextField(default="")
        method = CharField(default="manual")
        model = CharField(null=True)
        prompt_version = CharField(null=True)
        labeling_job = ForeignKeyField(LabelingJob, null=True, on_delete="SET NULL")
        score = FloatField(null=True)
        score_details = JSONField(null=True)
        is_current = BooleanField(default=False)
        author = CharField(default="")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "feature_label"
            indexes = ((("training", "feature_index"), False),)

    db.create_tables([FeatureLabel])

    class SteeringPreset(Model):
        name = CharField(unique=True)
        training = ForeignKeyField(Training, null=True, on_delete="CASCADE")
        config = JSONField(default=dict)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "steering_preset"

    db.create_tables([SteeringPreset])

    class TrainingMetric(Model):
        training = ForeignKeyField(Training, on_delete="CASCADE")
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
        envelope = JSONField(null=True)

        class Meta:
            database = db
            table_name = "training_metric"
            indexes = ((("training", "step"), True),)

    db.create_tables([TrainingMetric])

    class TrainingTemplate(Model):
        name = CharField(unique=True)
        description = TextField(default="")
        config = JSONField(default=dict)
        favourite = BooleanField(default=False)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "training_template"

    db.create_tables([TrainingTemplate])


def down(migrator: SchemaMigrator, db: Database) -> None:
    migrator.migrate(migrator.drop_table("training_template"))
    migrator.migrate(migrator.drop_table("training_metric"))
    migrator.migrate(migrator.drop_table("steering_preset"))
    migrator.migrate(migrator.drop_table("feature_label"))
    migrator.migrate(migrator.drop_table("labeling_job"))
    migrator.migrate(migrator.drop_table("feature"))
    migrator.migrate(migrator.drop_table("feature_set"))
    migrator.migrate(migrator.drop_table("training"))
    migrator.migrate(migrator.drop_table("sweep"))
    migrator.migrate(migrator.drop_table("extraction_template"))
    migrator.migrate(migrator.drop_table("activation_set"))
    migrator.migrate(migrator.drop_table("tokenization"))
    migrator.migrate(migrator.drop_table("dataset"))
    migrator.migrate(migrator.drop_table("language_model"))
    migrator.migrate(migrator.drop_table("job"))
