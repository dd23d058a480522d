"""The settings object and its helpers; see :mod:`background_task.core.conf`."""

from background_task.core.conf import (
    FAIL,
    LEGACY_PAIRS,
    RETRY,
    SPECS,
    WORKER_LOST_POLICIES,
    AppSettings,
    SettingSpec,
    anyone,
    app_settings,
    import_serializer,
    is_set,
    staff_only,
)

__all__ = [
    "FAIL",
    "LEGACY_PAIRS",
    "RETRY",
    "SPECS",
    "WORKER_LOST_POLICIES",
    "AppSettings",
    "SettingSpec",
    "anyone",
    "app_settings",
    "import_serializer",
    "is_set",
    "staff_only",
]
