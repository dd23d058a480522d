from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Named by its AppConfig path in INSTALLED_APPS, which 1.2.8 failed to discover."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"
