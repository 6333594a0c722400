"""Add target…: the scrape interval is judged as typed (once 0.05 became 0.2, 99999 became 3600)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from trimtab.widgets.target_dialog import TargetDialog

KINDS = ("instance", "balancer", "prometheus")


@pytest.fixture()
def dialog(qtbot) -> TargetDialog:
    dialog = TargetDialog(KINDS)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    qtbot.keyClicks(dialog.name, "api-9")
    qtbot.keyClicks(dialog.url, "http://127.0.0.1:8009/metrics")
    return dialog


def retype_interval(qtbot, dialog: TargetDialog, text: str) -> None:
    dialog.interval.edit.selectAll()
    qtbot.keyClick(dialog.interval.edit, Qt.Key.Key_Backspace)
    qtbot.keyClicks(dialog.interval.edit, text)


def press_enter(qtbot, dialog: TargetDialog) -> bool:
    with qtbot.waitSignal(dialog.finished, timeout=300, raising=False) as blocker:
        qtbot.keyClick(dialog.interval.edit, Qt.Key.Key_Return)
    return blocker.signal_triggered


@pytest.mark.parametrize(("typed", "why"), [("0.05", "out of range"), ("99999", "out of range"),
                                            ("-1", "out of range"), ("-", "not a number"),
                                            ("", "empty")])
def test_a_bad_interval_is_an_error_and_enter_adds_nothing(qtbot, dialog: TargetDialog,
                                                           typed: str, why: str) -> None:
    retype_interval(qtbot, dialog, typed)
    assert not press_enter(qtbot, dialog)
    assert dialog.isVisible()
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    error = dialog.interval.error.text()
    assert why in error and "from 0.2 to 3600 s" in error
    assert dialog.interval.text() == typed


def test_a_valid_interval_is_returned_as_typed(qtbot, dialog: TargetDialog) -> None:
    retype_interval(qtbot, dialog, "2.5")
    assert press_enter(qtbot, dialog) and dialog.result() == 1
    assert dialog.values() == ("api-9", "http://127.0.0.1:8009/metrics", "instance", 2.5)
