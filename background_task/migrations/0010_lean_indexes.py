"""Fewer indexes to maintain on every enqueue and every finished task.

- The history's 1.2.8 indexes on priority, attempts, locked_by and locked_at
  served no query (the history is read by run_at, failed_at, expires_at,
  task_id and task name).
- On PostgreSQL, Django adds a second ``varchar_pattern_ops`` index to each
  indexed CharField, for ``LIKE 'prefix%'`` lookups. Nothing here runs such
  lookups (the admin's search uses ``%...%``, which no index serves), so
  both tables drop them: six on the task table, five on the history.

Reversing the migration restores the history's indexes; the pattern indexes
are not recreated.
"""

from django.db import migrations, models

TABLES = ("background_task", "background_task_completedtask")


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(%s) AND indexdef LIKE %s",
            [list(TABLES), "%pattern_ops%"],
        )
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    dependencies = [
        ("background_task", "0009_samples"),
    ]

    operations = [
        migrations.AlterField(
            model_name="completedtask",
            name="attempts",
            field=models.IntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="completedtask",
            name="locked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="completedtask",
            name="locked_by",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name="completedtask",
            name="priority",
            field=models.IntegerField(default=0),
        ),
        migrations.RunPython(drop_pattern_indexes, migrations.RunPython.noop, elidable=False),
    ]
