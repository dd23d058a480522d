"""Layer 2, storage: the models (schema, querysets, state transitions), the
fast INSERT and DELETE paths, the claim strategies (``claim/``, one class per
database), pruning, and the counts the dashboard and metrics read.

Imports only :mod:`background_task.core`.
"""
