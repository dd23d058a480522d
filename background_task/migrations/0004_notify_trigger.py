# On PostgreSQL, a statement-level trigger NOTIFYs idle workers when tasks are
# inserted or made due (run_at changed). NOTIFY is delivered on commit, costs
# the enqueuer no extra round trip, and identical notifications within one
# transaction are folded into one. Other databases need nothing here.

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION background_task_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('background_task', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS background_task_notify_insert ON background_task;
CREATE TRIGGER background_task_notify_insert AFTER INSERT ON background_task
    FOR EACH STATEMENT EXECUTE FUNCTION background_task_notify();
DROP TRIGGER IF EXISTS background_task_notify_run_at ON background_task;
CREATE TRIGGER background_task_notify_run_at AFTER UPDATE OF run_at ON background_task
    FOR EACH STATEMENT EXECUTE FUNCTION background_task_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS background_task_notify_insert ON background_task;
DROP TRIGGER IF EXISTS background_task_notify_run_at ON background_task;
DROP FUNCTION IF EXISTS background_task_notify();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("background_task", "0003_task_id_status_results")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
