"""Settings of the benchmark project; BENCH_DB picks sqlite, postgres or mysql."""

import os
import tempfile

DB = os.environ.get("BENCH_DB", "sqlite")
NAME = os.environ.get("BENCH_DB_NAME", "bgtask_bench")
HOST = os.environ.get("DB_HOST", "127.0.0.1")

if DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), f"{NAME}.sqlite3"),
            "OPTIONS": {
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
elif DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": NAME,
            "USER": "postgres",
            "HOST": HOST,
            "PORT": "5432",
            # run.py --prepared: the opt-in tuning of docs/performance.md.
            "OPTIONS": (
                {"server_side_binding": True, "prepare_threshold": 5}
                if os.environ.get("BENCH_PG_PREPARE")
                else {}
            ),
        }
    }
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": NAME,
            "USER": "root",
            "HOST": HOST,
            "PORT": "3306",
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    raise RuntimeError(f"BENCH_DB must be sqlite, postgres or mysql, not {DB!r}")

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "background_task",
    "benchmarks.benchapp",
]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"background_task": {"handlers": ["stderr"], "level": "WARNING"}},
}

# The steady scenario keeps finished tasks BENCH_RESULT_TTL seconds (history
# pruning on, as a long-running project would have it).
if os.environ.get("BENCH_RESULT_TTL"):
    BACKGROUND_TASK_RESULT_TTL = int(os.environ["BENCH_RESULT_TTL"])

# BENCH_VACUUM_AFTER: PostgreSQL workers' VACUUM threshold ("" or 0: off).
if "BENCH_VACUUM_AFTER" in os.environ:
    BACKGROUND_TASK_VACUUM_AFTER = int(os.environ["BENCH_VACUUM_AFTER"] or 0) or None

# BENCH_INSTRUMENTS: "none" (no instrument), "auto" (the default: those whose
# library is installed) or a comma-separated list of instrument factories.
_instruments = os.environ.get("BENCH_INSTRUMENTS", "auto")
if _instruments != "auto":
    BACKGROUND_TASK_INSTRUMENTS = [] if _instruments == "none" else _instruments.split(",")

# BENCH_OTEL=noop: an OpenTelemetry SDK provider that exports every span to
# an exporter that drops it (the cost of recording spans, without a collector).
if os.environ.get("BENCH_OTEL") == "noop":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class _Dropped(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(_Dropped()))
    trace.set_tracer_provider(_provider)
