"""Installing the instruments BACKGROUND_TASK_INSTRUMENTS names, when Django starts.

``"auto"`` (the default) installs each integration whose library can be
imported: OpenTelemetry tracing with ``opentelemetry-api``, Prometheus
metrics with ``prometheus-client``. A list names the factories itself (an
``Instrument`` subclass, or a function returning an instance); ``[]``
installs none. See :mod:`background_task.core.instruments`.
"""

from __future__ import annotations

import importlib.util

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from background_task.core import instruments
from background_task.core.conf import app_settings

#: (library module, factory) of each integration ``"auto"`` installs when present.
AUTO = (
    ("opentelemetry.trace", "background_task.contrib.otel.default_tracing"),
    ("prometheus_client", "background_task.contrib.prometheus.default_metrics"),
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def configured_factories() -> list[str]:
    """The dotted paths of the factories to install."""
    chosen = app_settings.INSTRUMENTS
    if chosen == "auto":
        return [factory for module, factory in AUTO if _importable(module)]
    return list(chosen)


def install_configured() -> list[instruments.Instrument]:
    """Install the configured instruments (each once); return them."""
    installed = []
    for path in configured_factories():
        instrument = import_string(path)()
        if not isinstance(instrument, instruments.Instrument):
            raise ImproperlyConfigured(
                f"BACKGROUND_TASK_INSTRUMENTS: {path} returned a {type(instrument).__name__}, "
                f"not a background_task.core.instruments.Instrument."
            )
        installed.append(instruments.install(instrument))
    return installed
