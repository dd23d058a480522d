"""An app that sets a project's own ``DBTaskRunner`` subclass as ``tasks._runner``
(installed when BGTASK_TEST_RUNNER is set, for a worker subprocess)."""
