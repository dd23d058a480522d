"""django-background-tasks 1.2.8's own 55 tests pass against this package, in
both of its settings modules, on this pass's database (see tests/legacy_suite.py)."""

import os

import pytest

from tests import legacy_suite

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DB_PREPARED")), reason="run once per database, on the plain pass"
)


@pytest.fixture(scope="module")
def results() -> dict[str, legacy_suite.Result]:
    try:
        return {result.mode: result for result in legacy_suite.run_all(list(legacy_suite.MODES))}
    except legacy_suite.Unavailable as exc:
        if CI:
            raise
        pytest.skip(f"django-background-tasks 1.2.8 is not available: {exc}")


@pytest.mark.parametrize("mode", sorted(legacy_suite.MODES))
def test_the_1_2_8_suite_passes(results, mode):
    result = results[mode]
    assert result.ran == 55, result.output[-3000:]
    assert result.failed == 0, result.output[-6000:]
