"""TTL and weights dialogs driven by typed keys: what is typed is what is judged, never clamped.

Each bad input is typed into the real dialog and Enter pressed: the dialog must stay
open, return no change, name the allowed range next to the field and keep Apply disabled.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from trimtab.agent.balance.policies import MAX_WEIGHT
from trimtab.agent.config import MAX_TTL
from trimtab.widgets.change_dialogs import TtlDialog, WeightsDialog
from trimtab.widgets.number_field import NumberField

ROUTE = "/products/{id}"
CURRENT = {"api-1": 10.0, "api-2": 10.0, "api-3": 10.0}
SERVERS = [("api-1", 1, "ready"), ("api-2", 1, "ready"), ("api-3", 1, "ready")]


def share_preview(weights: dict[str, int], states: dict[str, str]) -> dict[str, float]:
    """w / Σw over ready servers (the rule the agent and the cockpit's preview use)."""
    total = sum(w for n, w in weights.items() if states[n] == "ready")
    return {n: (w / total if total and states[n] == "ready" else 0.0) for n, w in weights.items()}


@pytest.fixture()
def ttl_dialog(qtbot) -> TtlDialog:
    dialog = TtlDialog(ROUTE, CURRENT)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


@pytest.fixture()
def weights_dialog(qtbot) -> WeightsDialog:
    dialog = WeightsDialog(SERVERS, share_preview)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def retype(qtbot, field: NumberField, text: str) -> None:
    """Select what the field holds and type ``text`` over it, key by key."""
    field.edit.setFocus()
    field.edit.selectAll()
    qtbot.keyClick(field.edit, Qt.Key.Key_Backspace)
    qtbot.keyClicks(field.edit, text)


def press_enter(qtbot, dialog, widget) -> bool:
    """Press Enter in ``widget``; True if the dialog finished (accepted or rejected)."""
    with qtbot.waitSignal(dialog.finished, timeout=300, raising=False) as blocker:
        qtbot.keyClick(widget, Qt.Key.Key_Return)
    return blocker.signal_triggered


def apply_button(dialog):
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)


def test_the_dialogs_use_the_agents_bounds(ttl_dialog: TtlDialog,
                                           weights_dialog: WeightsDialog) -> None:
    assert (ttl_dialog.ttl.minimum, ttl_dialog.ttl.maximum) == (0, MAX_TTL)
    spin = weights_dialog.spins["api-1"]
    assert (spin.minimum, spin.maximum, spin.integer) == (0, MAX_WEIGHT, True)
    assert weights_dialog.sliders["api-1"].maximum() == MAX_WEIGHT


@pytest.mark.parametrize(("typed", "why"), [
    ("-5", "out of range"), ("99999999", "out of range"), ("86400.5", "out of range"),
    ("-", "not a number"), ("", "empty"), ("1e3", "not a number"), ("nan", "not a number"),
    ("10 s", "not a number"),
])
def test_a_bad_ttl_is_an_error_naming_the_range_and_enter_applies_nothing(
        qtbot, ttl_dialog: TtlDialog, typed: str, why: str) -> None:
    qtbot.keyClicks(ttl_dialog.reason, "a reason, so only the TTL is wrong")
    retype(qtbot, ttl_dialog.ttl, typed)
    assert not press_enter(qtbot, ttl_dialog, ttl_dialog.ttl.edit)
    assert ttl_dialog.isVisible()
    assert ttl_dialog.choice() is None
    assert not apply_button(ttl_dialog).isEnabled()
    error = ttl_dialog.ttl.error.text()
    assert why in error and "from 0 to 86400 s" in error
    assert ttl_dialog.ttl.error.isVisible()
    assert "9999" not in ttl_dialog.summary.text()  # no clamped value previewed as the change
    assert ttl_dialog.ttl.text() == typed  # nothing rewrote what was typed
    ttl_dialog.accept()  # not even a programmatic accept gets through
    assert ttl_dialog.isVisible() and ttl_dialog.choice() is None


def test_enter_never_reaches_cancel_or_apply_while_invalid(qtbot, ttl_dialog: TtlDialog) -> None:
    apply = apply_button(ttl_dialog)
    cancel = ttl_dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel)
    assert apply.isDefault() and not cancel.autoDefault()
    retype(qtbot, ttl_dialog.ttl, "-5")
    cancel.setFocus()
    assert not press_enter(qtbot, ttl_dialog, cancel)
    ttl_dialog.reason.setFocus()
    assert not press_enter(qtbot, ttl_dialog, ttl_dialog.reason)
    assert ttl_dialog.isVisible()


def test_a_change_on_every_instance_needs_a_reason(qtbot, ttl_dialog: TtlDialog) -> None:
    retype(qtbot, ttl_dialog.ttl, "30")
    assert ttl_dialog.ttl.error.text() == ""
    assert not press_enter(qtbot, ttl_dialog, ttl_dialog.ttl.edit)
    assert ttl_dialog.choice() is None and not apply_button(ttl_dialog).isEnabled()
    assert "reason" in ttl_dialog.blocked.text()
    qtbot.keyClicks(ttl_dialog.reason, "   ")  # blanks are no reason
    assert not apply_button(ttl_dialog).isEnabled()
    qtbot.keyClicks(ttl_dialog.reason, "more hits at peak")
    assert apply_button(ttl_dialog).isEnabled() and ttl_dialog.blocked.text() == ""
    assert "10 s → 30 s" in ttl_dialog.summary.text()
    assert press_enter(qtbot, ttl_dialog, ttl_dialog.reason)
    assert ttl_dialog.result() == 1
    assert ttl_dialog.choice() == (["api-1", "api-2", "api-3"], 30.0, "more hits at peak")


def test_every_instance_chosen_one_by_one_also_needs_a_reason(qtbot, ttl_dialog: TtlDialog) -> None:
    ttl_dialog.scope_some.setChecked(True)
    for check in ttl_dialog.checks.values():
        check.setChecked(True)
    retype(qtbot, ttl_dialog.ttl, "30")
    assert not press_enter(qtbot, ttl_dialog, ttl_dialog.ttl.edit)
    assert "reason" in ttl_dialog.blocked.text()


def test_a_canary_with_a_valid_ttl_applies_without_a_reason(qtbot, ttl_dialog: TtlDialog) -> None:
    ttl_dialog.scope_canary.setChecked(True)
    ttl_dialog.canary.setCurrentText("api-2")
    retype(qtbot, ttl_dialog.ttl, "45.5")
    assert apply_button(ttl_dialog).isEnabled()
    assert ttl_dialog.summary.text() == f"TTL of {ROUTE}: api-2: 10 s → 45.5 s"
    assert press_enter(qtbot, ttl_dialog, ttl_dialog.ttl.edit)
    assert ttl_dialog.choice() == (["api-2"], 45.5, "")


def test_the_bounds_themselves_are_accepted(qtbot, ttl_dialog: TtlDialog) -> None:
    ttl_dialog.scope_canary.setChecked(True)
    for typed, value in (("0", 0.0), ("86400", 86400.0), ("+7", 7.0), (" 12 ", 12.0)):
        retype(qtbot, ttl_dialog.ttl, typed)
        assert ttl_dialog.choice() == (["api-1"], value, ""), typed


def test_no_instance_chosen_or_nothing_changing_disables_apply(qtbot,
                                                               ttl_dialog: TtlDialog) -> None:
    qtbot.keyClicks(ttl_dialog.reason, "why")
    ttl_dialog.scope_some.setChecked(True)
    retype(qtbot, ttl_dialog.ttl, "30")
    assert not apply_button(ttl_dialog).isEnabled() and "instance" in ttl_dialog.blocked.text()
    ttl_dialog.checks["api-1"].setChecked(True)
    assert apply_button(ttl_dialog).isEnabled()
    retype(qtbot, ttl_dialog.ttl, "10")  # what api-1 already has
    assert not apply_button(ttl_dialog).isEnabled() and "already" in ttl_dialog.blocked.text()


@pytest.mark.parametrize(("field", "typed"), [("watch", "2"), ("watch", "99999"),
                                              ("p95_max", "-1"), ("err_max", "150")])
def test_bad_staged_gates_are_errors_too(qtbot, ttl_dialog: TtlDialog, field: str,
                                         typed: str) -> None:
    qtbot.keyClicks(ttl_dialog.reason, "staged")
    retype(qtbot, ttl_dialog.ttl, "30")
    ttl_dialog.staged.setChecked(True)
    assert apply_button(ttl_dialog).isEnabled()
    gate: NumberField = getattr(ttl_dialog, field)
    retype(qtbot, gate, typed)
    assert not press_enter(qtbot, ttl_dialog, gate.edit)
    assert ttl_dialog.choice() is None and ttl_dialog.staged_choice() is None
    assert "out of range" in gate.error.text() and gate.range_text() in gate.error.text()


@pytest.mark.parametrize(("typed", "why"), [("9000", "out of range"), ("-1", "out of range"),
                                            ("257", "out of range"), ("-", "not a whole number"),
                                            ("", "empty"), ("1.5", "not a whole number")])
def test_a_bad_weight_is_an_error_naming_the_range_and_enter_applies_nothing(
        qtbot, weights_dialog: WeightsDialog, typed: str, why: str) -> None:
    qtbot.keyClicks(weights_dialog.reason, "a reason, so only the weight is wrong")
    spin = weights_dialog.spins["api-1"]
    retype(qtbot, spin, typed)
    assert not press_enter(qtbot, weights_dialog, spin.edit)
    assert weights_dialog.isVisible()
    assert weights_dialog.choice() is None
    assert not apply_button(weights_dialog).isEnabled()
    assert why in spin.error.text() and "from 0 to 256" in spin.error.text()
    assert spin.text() == typed
    # The slider shows the last valid prefix typed ("90" of "9000"), never a clamped bound.
    assert weights_dialog.sliders["api-1"].value() not in (0, 256)
    assert "→" not in weights_dialog.summary.text()


def test_draining_a_server_needs_a_reason(qtbot, weights_dialog: WeightsDialog) -> None:
    retype(qtbot, weights_dialog.spins["api-3"], "0")
    assert weights_dialog.shares["api-3"].text() == "0.0 %"  # previewed even while blocked
    assert not press_enter(qtbot, weights_dialog, weights_dialog.spins["api-3"].edit)
    assert weights_dialog.choice() is None
    assert "reason" in weights_dialog.blocked.text() and "api-3" in weights_dialog.blocked.text()
    qtbot.keyClicks(weights_dialog.reason, "api-3 is slow")
    assert press_enter(qtbot, weights_dialog, weights_dialog.reason)
    assert weights_dialog.choice() == ({"api-3": 0}, {}, "api-3 is slow", False)


@pytest.mark.parametrize("state", ["drain", "maint"])
def test_a_drain_or_maint_state_needs_a_reason(qtbot, weights_dialog: WeightsDialog,
                                               state: str) -> None:
    weights_dialog.states["api-2"].setCurrentText(state)
    assert not apply_button(weights_dialog).isEnabled()
    assert "reason" in weights_dialog.blocked.text()
    qtbot.keyClicks(weights_dialog.reason, "maintenance window")
    assert weights_dialog.choice() == ({}, {"api-2": state}, "maintenance window", False)


def test_changing_every_server_needs_a_reason(qtbot, weights_dialog: WeightsDialog) -> None:
    for name in ("api-1", "api-2", "api-3"):
        retype(qtbot, weights_dialog.spins[name], "2")
    assert not press_enter(qtbot, weights_dialog, weights_dialog.spins["api-3"].edit)
    assert "every server" in weights_dialog.blocked.text()


def test_force_needs_a_reason(qtbot, weights_dialog: WeightsDialog) -> None:
    retype(qtbot, weights_dialog.spins["api-1"], "3")
    weights_dialog.force.setChecked(True)
    assert not apply_button(weights_dialog).isEnabled()
    assert "reason" in weights_dialog.blocked.text()


def test_a_valid_weight_applies_and_the_slider_follows(qtbot,
                                                       weights_dialog: WeightsDialog) -> None:
    assert not apply_button(weights_dialog).isEnabled()  # nothing changed yet
    retype(qtbot, weights_dialog.spins["api-1"], "3")
    assert weights_dialog.sliders["api-1"].value() == 3
    assert weights_dialog.shares["api-1"].text() == "60.0 %"
    assert weights_dialog.summary.text() == "api-1 weight 1 → 3"
    weights_dialog.sliders["api-2"].setValue(2)  # the slider writes the field
    assert weights_dialog.spins["api-2"].text() == "2"
    assert press_enter(qtbot, weights_dialog, weights_dialog.spins["api-1"].edit)
    assert weights_dialog.choice() == ({"api-1": 3, "api-2": 2}, {}, "", False)


def test_a_current_ttl_is_shown_exactly_and_is_not_a_change(qtbot) -> None:
    dialog = TtlDialog(ROUTE, {"api-1": 12345.678, "api-2": 12345.678})
    qtbot.addWidget(dialog)
    assert dialog.ttl.text() == "12345.678"  # not rounded for display into another value
    qtbot.keyClicks(dialog.reason, "why")
    assert dialog.choice() is None and "already" in dialog.blocked.text()
