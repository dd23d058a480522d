"""The package's version, readable without importing Django (setup.cfg reads it)."""

__version__ = "0.1.0"
