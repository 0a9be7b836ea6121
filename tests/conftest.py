"""Suite-wide fixtures, and the hypothesis profile every property test runs under."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings
from pg_server import pg_dsn, pg_server  # noqa: F401 - fixtures: a real PostgreSQL server

# Reproducible fuzzing with a fixed budget: examples come from a seed derived from each test
# (derandomize), not from a local example database, so a failure in CI fails the same way on
# every machine; print_blob prints the @reproduce_failure line. Tests may lower or raise
# max_examples with their own settings (strategies.FUZZ); HYPOTHESIS_PROFILE=explore searches
# with fresh random seeds and many more examples when hunting for new bugs locally.
settings.register_profile(
    "fotawatch",
    derandomize=True,
    database=None,
    max_examples=100,
    deadline=None,
    print_blob=True,
)
settings.register_profile("explore", max_examples=5_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fotawatch"))


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """configure_logging() changes process-wide state: give every test the defaults back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
