import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from background_task.checks import check_settings
from background_task.settings import app_settings


def test_defaults():
    assert app_settings.MAX_ATTEMPTS == 25
    assert app_settings.MAX_RUN_TIME == 3600
    assert app_settings.RUN_ASYNC is False
    assert app_settings.ASYNC_THREADS >= 1
    assert app_settings.BACKGROUND_TASK_PRIORITY_ORDERING == "-"
    assert check_settings() == []


@override_settings(MAX_ATTEMPTS=3, MAX_RUN_TIME=60)
def test_legacy_names_are_read():
    assert app_settings.MAX_ATTEMPTS == 3
    assert app_settings.BACKGROUND_TASK_MAX_ATTEMPTS == 3
    assert app_settings.MAX_RUN_TIME == 60


@override_settings(BACKGROUND_TASK_MAX_ATTEMPTS=4, BACKGROUND_TASK_MAX_RUN_TIME=30)
def test_prefixed_names_are_read_unlike_1_2_8():
    assert app_settings.MAX_ATTEMPTS == 4
    assert app_settings.MAX_RUN_TIME == 30


@override_settings(BACKGROUND_TASK_PRIORITY_ORDERING="asc")
def test_ascending_ordering():
    assert app_settings.PRIORITY_ORDERING == "ASC"
    assert app_settings.BACKGROUND_TASK_PRIORITY_ORDERING == ""


def test_a_value_is_read_from_django_once_until_a_setting_changes(settings, monkeypatch):
    from background_task.core.conf import SettingSpec

    reads: list[str] = []
    raw = SettingSpec.raw

    def counted(spec):
        reads.append(spec.names[0])
        return raw(spec)

    monkeypatch.setattr(SettingSpec, "raw", counted)
    settings.BACKGROUND_TASK_MAX_ATTEMPTS = 7  # the fixture sends setting_changed
    assert [app_settings.MAX_ATTEMPTS for _ in range(3)] == [7, 7, 7]
    assert reads.count("BACKGROUND_TASK_MAX_ATTEMPTS") == 1
    settings.BACKGROUND_TASK_MAX_ATTEMPTS = 8
    assert app_settings.MAX_ATTEMPTS == 8
    with override_settings(BACKGROUND_TASK_MAX_ATTEMPTS=0):
        for _ in range(2):  # a bad value is never kept: it raises on every read
            with pytest.raises(ImproperlyConfigured, match="MAX_ATTEMPTS"):
                _ = app_settings.MAX_ATTEMPTS
    assert app_settings.MAX_ATTEMPTS == 8


def test_whether_a_setting_is_set_follows_its_changes():
    from background_task.core.conf import is_set

    assert not is_set("BACKGROUND_TASK_RESULT_TTL")
    with override_settings(BACKGROUND_TASK_RESULT_TTL=60):
        assert is_set("BACKGROUND_TASK_RESULT_TTL")
    assert not is_set("BACKGROUND_TASK_RESULT_TTL")


@override_settings(TIME_ZONE="Asia/Tokyo")
def test_a_default_that_follows_another_setting_follows_its_changes():
    assert app_settings.SCHEDULE_TIMEZONE == "Asia/Tokyo"
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert app_settings.SCHEDULE_TIMEZONE == "Europe/Paris"
    assert app_settings.SCHEDULE_TIMEZONE == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("setting", "value", "check_id", "fragment"),
    [
        ("MAX_ATTEMPTS", 0, "background_task.E001", "MAX_ATTEMPTS must be a positive integer"),
        ("BACKGROUND_TASK_MAX_ATTEMPTS", "5", "background_task.E001", "not '5'"),
        ("MAX_RUN_TIME", -1, "background_task.E002", "positive number of seconds"),
        ("BACKGROUND_TASK_RUN_ASYNC", "yes", "background_task.E003", "True or False"),
        ("BACKGROUND_TASK_ASYNC_THREADS", 0, "background_task.E004", "positive integer"),
        ("BACKGROUND_TASK_ASYNC_CONCURRENCY", 0, "background_task.E025", "positive integer"),
        ("BACKGROUND_TASK_PRIORITY_ORDERING", "UP", "background_task.E005", "'DESC'"),
        ("BACKGROUND_TASK_SHUTDOWN_TIMEOUT", -1, "background_task.E006", ">= 0"),
        ("BACKGROUND_TASK_HEARTBEAT_INTERVAL", 0, "background_task.E007", "positive number"),
        ("BACKGROUND_TASK_WORKER_LOST_AFTER", "30", "background_task.E008", "not '30'"),
        ("BACKGROUND_TASK_DEFAULT_TIMEOUT", float("inf"), "background_task.E009", "None or"),
        ("BACKGROUND_TASK_ON_WORKER_LOST", "retry-twice", "background_task.E010", "'retry'"),
        ("BACKGROUND_TASK_SCHEDULE", ["0 * * * *"], "background_task.E012", "a dict of schedules"),
        ("BACKGROUND_TASK_RESULT_TTL", -5, "background_task.E014", "seconds >= 0"),
        ("BACKGROUND_TASK_SERIALIZER", "no.such.Serializer", "background_task.E015", "dumps"),
        ("BACKGROUND_TASK_STATUS_PERMISSION", "no.such.check", "background_task.E016", "request"),
        ("BACKGROUND_TASK_STATUS_DETAILS_PERMISSION", 5, "background_task.E017", "request, task"),
        ("BACKGROUND_TASK_RUN_IMMEDIATELY", "yes", "background_task.E018", "True or False"),
        ("BACKGROUND_TASK_SCHEDULE_TIMEZONE", "Mars/Olympus", "background_task.E013", "IANA"),
        ("BACKGROUND_TASK_VACUUM_AFTER", 0, "background_task.E034", "positive integer"),
        ("BACKGROUND_TASK_VACUUM_AFTER", 1e4, "background_task.E034", "not 10000.0"),
    ],
)
def test_bad_settings_fail_checks_and_reads(setting, value, check_id, fragment):
    with override_settings(**{setting: value}):
        errors = check_settings()
        assert [e.id for e in errors] == [check_id]
        assert fragment in errors[0].msg and setting in errors[0].msg
        attr = {
            "E001": "MAX_ATTEMPTS",
            "E002": "MAX_RUN_TIME",
            "E003": "RUN_ASYNC",
            "E004": "ASYNC_THREADS",
            "E025": "ASYNC_CONCURRENCY",
            "E005": "PRIORITY_ORDERING",
            "E006": "SHUTDOWN_TIMEOUT",
            "E007": "HEARTBEAT_INTERVAL",
            "E008": "WORKER_LOST_AFTER",
            "E009": "DEFAULT_TIMEOUT",
            "E010": "ON_WORKER_LOST",
            "E012": "SCHEDULE",
            "E013": "SCHEDULE_TIMEZONE",
            "E014": "RESULT_TTL",
            "E015": "SERIALIZER",
            "E016": "STATUS_PERMISSION",
            "E017": "STATUS_DETAILS_PERMISSION",
            "E018": "RUN_IMMEDIATELY",
            "E034": "VACUUM_AFTER",
        }[check_id.rsplit(".", 1)[1]]
        with pytest.raises(ImproperlyConfigured, match=setting):
            getattr(app_settings, attr)


def test_liveness_defaults():
    assert app_settings.HEARTBEAT_INTERVAL == 5
    assert app_settings.WORKER_LOST_AFTER == 30
    assert app_settings.DEFAULT_TIMEOUT is None
    assert app_settings.ON_WORKER_LOST == "retry"


@override_settings(BACKGROUND_TASK_HEARTBEAT_INTERVAL=10, BACKGROUND_TASK_WORKER_LOST_AFTER=20)
def test_lost_after_must_cover_several_heartbeats():
    [error] = check_settings()
    assert error.id == "background_task.E011"
    assert "at least three heartbeat intervals" in error.msg


@override_settings(MAX_ATTEMPTS=3, BACKGROUND_TASK_MAX_ATTEMPTS=5)
def test_conflicting_legacy_and_prefixed_names_warn():
    messages = check_settings()
    assert [m.id for m in messages] == ["background_task.W001"]
    assert app_settings.MAX_ATTEMPTS == 5


def test_checks_are_registered():
    from django.core import checks

    assert check_settings in checks.registry.registry.get_checks()


def test_schedule_defaults():
    assert app_settings.SCHEDULE == {}
    with override_settings(TIME_ZONE="Europe/Berlin"):
        assert app_settings.SCHEDULE_TIMEZONE == "Europe/Berlin"
    with override_settings(BACKGROUND_TASK_SCHEDULE_TIMEZONE="America/New_York"):
        assert app_settings.SCHEDULE_TIMEZONE == "America/New_York"


@override_settings(BACKGROUND_TASK_FENCE_AFTER=29.9, BACKGROUND_TASK_WORKER_LOST_AFTER=30)
def test_a_fence_deadline_too_close_to_lost_after_fails_the_checks():
    [error] = check_settings()
    assert error.id == "background_task.E032" and "0.25s below" in error.msg


@override_settings(BACKGROUND_TASK_FENCE_AFTER=6, BACKGROUND_TASK_HEARTBEAT_INTERVAL=5)
def test_a_fence_deadline_under_two_heartbeats_fails_the_checks():
    [error] = check_settings()
    assert error.id == "background_task.E032" and "two heartbeat intervals" in error.msg


@override_settings(BACKGROUND_TASK_SELF_FENCING=False, BACKGROUND_TASK_FENCE_AFTER=29.9)
def test_without_self_fencing_its_deadline_is_not_checked():
    assert check_settings() == []


@override_settings(BACKGROUND_TASK_LISTEN_DATABASE="direct")
def test_a_listen_database_missing_from_databases_fails_the_checks():
    [error] = check_settings()
    assert error.id == "background_task.E033" and "'direct'" in error.msg
