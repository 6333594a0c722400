"""Shared fixtures. Qt runs offscreen; external servers are real binaries started per test.

Under CI (``CI`` set, as .ci/run does) a missing ``redis-server`` or ``haproxy``
fails the test instead of skipping it: CI must install them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QSettings (window layout) must not leak between test runs or into the user's config.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="trimtab-test-config-")


def require_binary(name: str) -> str:
    """Path of ``name``; fail under CI, skip elsewhere, when it is not installed."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed (Debian package: {name})"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI must install it (.ci/run)")
    pytest.skip(message)
    raise AssertionError("unreachable")
