# As in django-background-tasks 1.2.8, under the same name: it restates the
# 190-character task_name and queue columns and changes nothing in the schema.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("background_task", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name=model,
            name=name,
            field=models.CharField(db_index=True, max_length=190, **extra),
        )
        for model in ("completedtask", "task")
        for name, extra in (("queue", {"blank": True, "null": True}), ("task_name", {}))
    ]
