"""Helpers for tests that need a tool outside Python (promtool, prometheus, systemd-analyze, ...).

On a developer machine a missing tool skips the test with the reason; in CI (`CI=true`) it
fails it, so a broken CI image cannot turn a suite green by skipping it. Mark such tests
`@pytest.mark.external`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["in_ci", "require_tool", "run_tool"]

# Where each tool comes from, for the skip/fail message.
_INSTALL_HINTS = {
    "promtool": "apt-get install prometheus (Debian/Ubuntu) or a release from prometheus.io",
    "prometheus": "apt-get install prometheus (Debian/Ubuntu) or a release from prometheus.io",
    "systemd-analyze": "apt-get install systemd",
}


def in_ci() -> bool:
    """Whether the tests run in CI, where a missing tool is an error rather than a skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_tool(name: str) -> str:
    """Return the path of executable `name`; skip the test if it is missing (fail under CI=true)."""
    path = shutil.which(name)
    if path is not None:
        return path
    hint = _INSTALL_HINTS.get(name, "install it")
    reason = f"{name} not found on PATH ({hint})"
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this is an error, not a skip", pytrace=False)
    pytest.skip(reason)


def run_tool(name: str, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run tool `name` (see `require_tool`) with `args`; never raises on a non-zero exit."""
    return subprocess.run(
        [require_tool(name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
