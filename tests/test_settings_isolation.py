"""Every test gets its own QSettings: a remembered route filter, tab or theme written by one
test must not reach the next (tests/conftest.py's ``_own_qsettings``).

The two tests run in file order (pytest's default): the first leaves values behind, the
second must not see them.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings


def test_a_test_writes_a_filter_and_a_theme() -> None:
    settings = QSettings("trimtab", "trimtab")
    settings.setValue("filter/routes", "/leaked")
    settings.setValue("window/theme", "light")
    settings.sync()
    assert QSettings("trimtab", "trimtab").value("filter/routes") == "/leaked"


def test_the_next_test_starts_with_empty_settings() -> None:
    settings = QSettings("trimtab", "trimtab")
    assert settings.allKeys() == []
    assert settings.value("filter/routes") is None
