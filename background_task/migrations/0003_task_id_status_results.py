# Everything django-background-task adds to the 1.2.8 schema. Existing rows
# get a task id derived from their primary key (one UPDATE per table, fast on
# large tables) and a status derived from the 1.2.8 columns.

from django.db import migrations, models
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat

import background_task.models

STATUS_CHOICES = [
    ("waiting", "waiting"),
    ("running", "running"),
    ("done", "done"),
    ("error", "error"),
    ("cancelled", "cancelled"),
]


def shared_fields(default_status):
    return [
        ("task_id", models.CharField(editable=False, max_length=64, null=True)),
        ("status", models.CharField(choices=STATUS_CHOICES, default=default_status, max_length=16)),
        ("enqueued_at", models.DateTimeField(blank=True, null=True)),
        ("scheduled_at", models.DateTimeField(blank=True, null=True)),
        ("started_at", models.DateTimeField(blank=True, null=True)),
        ("last_attempted_at", models.DateTimeField(blank=True, null=True)),
        ("finished_at", models.DateTimeField(blank=True, null=True)),
        ("result", models.TextField(blank=True, null=True)),
        ("errors", models.JSONField(blank=True, default=list)),
        ("worker_ids", models.JSONField(blank=True, default=list)),
        ("max_attempts", models.PositiveIntegerField(blank=True, null=True)),
        ("timeout", models.FloatField(blank=True, null=True)),
        ("result_ttl", models.PositiveIntegerField(blank=True, null=True)),
        ("backend", models.CharField(blank=True, max_length=32, null=True)),
    ]


def fill_existing_rows(apps, schema_editor):
    using = schema_editor.connection.alias
    Task = apps.get_model("background_task", "Task")
    CompletedTask = apps.get_model("background_task", "CompletedTask")
    for model, prefix in ((Task, "legacy-"), (CompletedTask, "legacy-completed-")):
        model.objects.using(using).filter(task_id__isnull=True).update(
            task_id=Concat(Value(prefix), Cast("id", CharField(max_length=20)))
        )
    Task.objects.using(using).filter(locked_by__isnull=False, locked_at__isnull=False).update(
        status="running"
    )
    completed = CompletedTask.objects.using(using)
    completed.filter(failed_at__isnull=False).update(status="error")
    # 1.2.8 stored the completion time in run_at.
    completed.filter(finished_at__isnull=True).update(finished_at=models.F("run_at"))


def task_id_field():
    return models.CharField(
        default=background_task.models.new_task_id, editable=False, max_length=64, unique=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("background_task", "0002_auto_20170927_1109"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        *[
            migrations.AddField(model_name="completedtask", name=name, field=field)
            for name, field in shared_fields("done")
        ],
        migrations.AddField(
            model_name="completedtask",
            name="expires_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        *[
            migrations.AddField(model_name="task", name=name, field=field)
            for name, field in shared_fields("waiting")
        ],
        migrations.AddField(
            model_name="task",
            name="claim_token",
            field=models.CharField(blank=True, editable=False, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="cancel_requested",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="task",
            name="unique_key",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(fill_existing_rows, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(model_name="completedtask", name="task_id", field=task_id_field()),
        migrations.AlterField(model_name="task", name="task_id", field=task_id_field()),
        # The claim reads (status, priority, run_at, id); these single-column
        # indexes of 1.2.8 served no query and slowed every write.
        migrations.AlterField(model_name="task", name="attempts", field=models.IntegerField(default=0)),
        migrations.AlterField(
            model_name="task", name="failed_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AlterField(
            model_name="task", name="locked_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AlterField(model_name="task", name="priority", field=models.IntegerField(default=0)),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                fields=["status", "-priority", "run_at", "id"], name="background_task_claim_desc"
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                fields=["status", "priority", "run_at", "id"], name="background_task_claim_asc"
            ),
        ),
    ]
