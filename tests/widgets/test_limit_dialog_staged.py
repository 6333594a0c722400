"""The Change limit… dialog's staged option: canary, watch and the two gates (429 share and
error rate), judged as typed like every other field; what it hands the caller; that it
still fits a laptop screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtTest import QTest
from trimtab.widgets.limit_dialog import LimitDialog, LimitSettings

from tests.app.ui.test_dialog_fit import LAPTOP, assert_fits

NOW = LimitSettings("/search", "header:x-api-key", 2.0, 10, "shadow")
NAMES = ["api-1", "api-2", "api-3"]
LONG_NAMES = [f"checkout-api-{n}.eu-west-1.internal" for n in range(1, 13)]


@pytest.fixture()
def dialog(qtbot) -> Iterator[LimitDialog]:
    dialog = LimitDialog("per-key-search", {name: NOW for name in NAMES})
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    yield dialog
    dialog.close()


def staged_enforce(dialog: LimitDialog) -> None:
    dialog.mode.setCurrentText("enforce")
    dialog.reason.setText("greedy client")
    dialog.staged.setChecked(True)


@pytest.mark.parametrize(("field", "text", "named"), [
    ("watch", "4", "Watch: 4 is out of range: enter from 5 to 3600 s"),
    ("watch", "3601", "Watch: 3601 is out of range: enter from 5 to 3600 s"),
    ("watch", "", "Watch: empty: enter from 5 to 3600 s"),
    ("watch", "1e3", "Watch: “1e3” is not a number: enter from 5 to 3600 s"),
    ("refused_max", "100.5", "429-share gate: 100.5 is out of range: enter from 0 to 100 %"),
    ("refused_max", "-1", "429-share gate: -1 is out of range: enter from 0 to 100 %"),
    ("refused_max", "nan", "429-share gate: “nan” is not a number: enter from 0 to 100 %"),
    ("refused_max", "5%", "429-share gate: “5%” is not a number: enter from 0 to 100 %"),
    ("err_max", "101", "error-rate gate: 101 is out of range: enter from 0 to 100 %"),
    ("err_max", "inf", "error-rate gate: “inf” is not a number: enter from 0 to 100 %"),
])
def test_a_bad_staged_field_blocks_apply_naming_the_range(qtbot, dialog, field: str, text: str,
                                                          named: str) -> None:
    staged_enforce(dialog)
    assert dialog.problem() is None  # the change itself is valid
    getattr(dialog, field).setText(text)
    assert dialog.problem() == named
    assert named in dialog.blocked.text()
    assert dialog.choice() is None and dialog.staged_choice() is None
    assert not dialog.apply.isEnabled()
    dialog.show()
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    QTest.keyClick(getattr(dialog, field).edit, Qt.Key.Key_Return)  # Enter does nothing
    dialog.accept()  # nor does a caller's accept
    assert dialog.result() == 0 and dialog.isVisible()


def test_a_bad_staged_field_is_no_problem_while_not_staged(dialog) -> None:
    """The gates are only judged for a staged change; unticked, they are not sent at all."""
    staged_enforce(dialog)
    dialog.watch.setText("0")
    assert dialog.problem() is not None
    dialog.staged.setChecked(False)
    assert dialog.problem() is None and dialog.staged_choice() is None
    assert dialog.choice() is not None


def test_staged_hands_over_canary_watch_and_gates_as_shares(dialog) -> None:
    assert dialog.canary.isHidden() and dialog.refused_max.isHidden()
    dialog.scope_one.setChecked(True)
    dialog.instance.setCurrentText("api-3")
    staged_enforce(dialog)
    assert not dialog.canary.isHidden() and not dialog.refused_max.isHidden()
    # Staged goes everywhere, the canary first: the one-instance scope is switched off.
    assert dialog.scope_all.isChecked() and not dialog.scope_one.isEnabled()
    dialog.canary.setCurrentText("api-2")
    assert dialog.staged_choice() == ("api-2", 120.0, 0.01, 0.05)  # the defaults: 1 %, 5 %
    assert dialog.choice() == (NAMES, {"key": "header:x-api-key", "rate": 2.0, "burst": 10,
                                       "mode": "enforce"}, "greedy client")
    dialog.watch.setText("30")
    dialog.refused_max.setText("12.5")
    dialog.err_max.setText("0")  # a gate at 0 is no gate
    assert dialog.staged_choice() == ("api-2", 30.0, None, 0.125)
    assert "first api-2 only" in dialog.summary.text()
    dialog.staged.setChecked(False)
    assert dialog.scope_one.isEnabled() and dialog.watch.isHidden()


def test_a_staged_shadow_change_says_the_429_gate_watches_nothing(dialog) -> None:
    dialog.rate.setText("1")
    dialog.reason.setText("tighter")
    dialog.staged.setChecked(True)
    assert "in shadow mode nobody is refused" in dialog.summary.text()
    dialog.mode.setCurrentText("enforce")
    assert "nobody is refused" not in dialog.summary.text()


def test_staged_fits_a_laptop_with_every_error_and_is_rendered(qtbot, tmp_path) -> None:
    dialog = LimitDialog("per-key-search", {name: NOW for name in LONG_NAMES})
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    dialog.show()
    staged_enforce(dialog)
    dialog.set_whatif("header:x-api-key", 2.0, 10, 123_456, 7_890, 12, 600.0)
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])
    frame = dialog.frameGeometry()
    assert QRect(LAPTOP).contains(QRect(0, 0, frame.width(), frame.height()))
    assert dialog.grab().save(str(tmp_path / "limit-staged.png"))
    dialog.rate.setText("99999999999")
    dialog.watch.setText("99999999")
    dialog.refused_max.setText("-12345.678")
    dialog.err_max.setText("1000")
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])
    assert not dialog.apply.isEnabled()
    assert dialog.grab().save(str(tmp_path / "limit-staged-errors.png"))
    dialog.close()
