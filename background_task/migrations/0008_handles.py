from django.db import migrations, models


def rename_result(model_name):
    # The column keeps its name ("result"); only the model attribute changes,
    # so that ``task.result`` can be the decoded return value.
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.RenameField(model_name, "result", "result_json"),
            migrations.AlterField(
                model_name,
                "result_json",
                models.TextField(blank=True, db_column="result", null=True),
            ),
        ]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("background_task", "0007_repeat_rule"),
    ]

    operations = [
        rename_result("task"),
        rename_result("completedtask"),
        migrations.AddField(
            model_name="task",
            name="cancel_force",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
