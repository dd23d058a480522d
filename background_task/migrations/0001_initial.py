# The schema of django-background-tasks 1.2.8, under the same migration name,
# so a database built by 1.2.8 is already at this state.

import django.db.models.deletion
from django.db import migrations, models

REPEAT_CHOICES = [
    (3600, "hourly"),
    (86400, "daily"),
    (604800, "weekly"),
    (1209600, "every 2 weeks"),
    (2419200, "every 4 weeks"),
    (0, "never"),
]


def task_fields(related_name):
    return [
        ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
        ("task_name", models.CharField(db_index=True, max_length=190)),
        ("task_params", models.TextField()),
        ("task_hash", models.CharField(db_index=True, max_length=40)),
        ("verbose_name", models.CharField(blank=True, max_length=255, null=True)),
        ("priority", models.IntegerField(db_index=True, default=0)),
        ("run_at", models.DateTimeField(db_index=True)),
        ("repeat", models.BigIntegerField(choices=REPEAT_CHOICES, default=0)),
        ("repeat_until", models.DateTimeField(blank=True, null=True)),
        ("queue", models.CharField(blank=True, db_index=True, max_length=190, null=True)),
        ("attempts", models.IntegerField(db_index=True, default=0)),
        ("failed_at", models.DateTimeField(blank=True, db_index=True, null=True)),
        ("last_error", models.TextField(blank=True)),
        ("locked_by", models.CharField(blank=True, db_index=True, max_length=64, null=True)),
        ("locked_at", models.DateTimeField(blank=True, db_index=True, null=True)),
        ("creator_object_id", models.PositiveIntegerField(blank=True, null=True)),
        (
            "creator_content_type",
            models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name=related_name,
                to="contenttypes.contenttype",
            ),
        ),
    ]


class Migration(migrations.Migration):
    initial = True

    dependencies = [("contenttypes", "0002_remove_content_type_name")]

    operations = [
        migrations.CreateModel(
            name="CompletedTask", fields=task_fields("completed_background_task")
        ),
        migrations.CreateModel(
            name="Task",
            fields=task_fields("background_task"),
            options={"db_table": "background_task"},
        ),
    ]
