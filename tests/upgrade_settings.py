"""Settings for the in-place upgrade test: usable by 1.2.8 and by this package."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.upgradeapp"]
