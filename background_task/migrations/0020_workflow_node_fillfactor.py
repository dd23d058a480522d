"""Room on each page of the workflow node table for its rows' new versions.

Every node is updated once or twice in its life (started, then settled). On
PostgreSQL an UPDATE that finds room on its row's page writes the new
version there and touches no index (a heap-only tuple); one that finds the
page full moves the row and adds an entry to each of the table's four
indexes. A group's members are inserted together, so their pages start full.
A fill factor of 70 keeps 30 % of each new page free. Other databases are
left as they are.
"""

from django.db import migrations

FILLFACTOR = 70


def _alter(schema_editor, storage):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name("background_task_workflownode")
        schema_editor.execute(f"ALTER TABLE {table} {storage}")


def set_fillfactor(apps, schema_editor):
    _alter(schema_editor, f"SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    _alter(schema_editor, "RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("background_task", "0019_workflows"),
    ]

    operations = [
        migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False),
    ]
