"""Shared fixtures. Qt runs offscreen; external servers are real binaries started per test.

Under CI (``CI`` set, as .ci/run does) a missing ``redis-server`` or ``haproxy``
fails the test instead of skipping it: CI must install them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def _own_qsettings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test reads and writes its own QSettings folder.

    The cockpit remembers a table's filter text, the window's tab, geometry and theme in
    ``QSettings("trimtab", "trimtab")``; shared by the whole process, a filter one test typed
    hid rows from the next test's table. Qt resolves the user-scope path once per process, so
    the XDG_CONFIG_HOME above only isolates runs; ``QSettings.setPath`` moves every settings
    object made after it. A folder of its own (not ``tmp_path``) so that a test listing its
    ``tmp_path`` finds only its own files. Agent-only installs have no Qt: nothing to isolate.
    """
    try:
        from PySide6.QtCore import QSettings
    except ImportError:
        yield
        return
    folder = str(tmp_path_factory.mktemp("qsettings"))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, folder)
    yield
