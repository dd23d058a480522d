"""Tasks written against the 1.2.8 API only, so both packages can load them."""

from background_task import background


@background
def upgrade_record(key):
    import background_task
    from tests.upgradeapp.models import UpgradeRun

    UpgradeRun.objects.create(key=key, package=getattr(background_task, "__version__", "?"))
