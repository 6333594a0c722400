"""Every dialog fits a 1,366 × 768 laptop screen with its largest real content, and its
Apply / Cancel buttons stay on screen (issue 20.13).

The offscreen platform's screen is 800 × 800, so each dialog is told the laptop's
available area (``screen_area``), the one input its fitting uses; the content is what the
real callers put in: the agent's full what-if grid (``trimtab.agent.whatif.GRID``), every
error shown at once, twelve instances or servers with long names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QAbstractButton, QApplication, QDialog
from trimtab.agent.whatif import GRID
from trimtab.widgets.change_dialogs import TtlDialog, WeightsDialog
from trimtab.widgets.export_dialog import ExportDialog
from trimtab.widgets.target_dialog import TargetDialog

LAPTOP = QRect(0, 0, 1366, 768)
NAMES = [f"checkout-api-{n}.eu-west-1.internal" for n in range(1, 13)]  # twelve, long
SERVERS = [f"checkout-api-{n}.eu-west-1.internal" for n in range(1, 25)]  # a big backend


def settle() -> None:
    """Run the queued layout requests (a what-if arriving re-lays the dialog out)."""
    for _ in range(3):
        QApplication.sendPostedEvents()
        QApplication.processEvents()


def assert_fits(qtbot, dialog: QDialog, buttons: list[QAbstractButton]) -> None:
    """The dialog's frame lies inside the laptop screen; each button is shown inside it."""
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    settle()
    frame = dialog.frameGeometry()
    assert frame.width() <= LAPTOP.width() and frame.height() <= LAPTOP.height(), frame
    inside = dialog.rect()
    for button in buttons:
        assert button.isVisible(), button.text()
        top_left = button.mapTo(dialog, button.rect().topLeft())
        assert inside.contains(QRect(top_left, button.size())), (button.text(), top_left)


@pytest.fixture()
def ttl_dialog(qtbot) -> Iterator[TtlDialog]:
    dialog = TtlDialog("/catalogue/{tenant}/products/{id}/variants/{variant}",
                       {name: 10.0 for name in NAMES})
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    yield dialog
    dialog.close()


def test_ttl_dialog_fits_with_the_whatif_and_every_error(qtbot, ttl_dialog: TtlDialog) -> None:
    dialog = ttl_dialog
    dialog.show()
    dialog.staged.setChecked(True)  # the gate rows count too
    dialog.ttl.setValue(99999999)  # the longest error: out of range
    dialog.set_whatif({ttl: min(0.99, ttl / 100) for ttl in GRID}, 10.0, 123_456)
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])
    assert "86400 s" in dialog.preview.text()  # the whole grid is shown, wrapped
    dialog.ttl.setValue(30)
    assert_fits(qtbot, dialog, [dialog.apply, *dialog.buttons.buttons()])


def test_ttl_dialog_whatif_does_not_widen_it(qtbot, ttl_dialog: TtlDialog) -> None:
    dialog = ttl_dialog
    dialog.show()
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    before = dialog.frameGeometry().width()
    dialog.set_whatif({ttl: 0.5 for ttl in GRID}, 10.0, 2000)
    settle()
    assert dialog.frameGeometry().width() <= max(before, 900)


def test_weights_dialog_fits_with_24_servers_and_errors(qtbot) -> None:
    dialog = WeightsDialog([(name, 1, "ready") for name in SERVERS],
                           lambda w, s: {n: 1 / len(w) for n in w})
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    dialog.show()
    for spin in dialog.spins.values():
        spin.setValue(9000)  # every row shows its out-of-range error
    assert_fits(qtbot, dialog, dialog.buttons.buttons())
    assert not dialog.apply.isEnabled()
    dialog.close()


def test_target_dialog_fits_with_a_long_error(qtbot) -> None:
    dialog = TargetDialog(("instance", "balancer", "prometheus"))
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.kind.setCurrentText("prometheus")
    dialog.url.setText("http://" + "very-long-host-name." * 20 + "example:9090")
    dialog.show_error("Could not add the target: " + "a target named api-1 already exists; " * 12
                      + "http://" + "x" * 300)
    assert_fits(qtbot, dialog, dialog.buttons.buttons())
    dialog.close()


def test_export_dialog_fits_with_an_error_for_a_long_path(qtbot, tmp_path) -> None:
    dialog = ExportDialog(str(tmp_path / ("incident-" + "y" * 200 + ".trimtab")))
    dialog.screen_area = LAPTOP
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.path.setText("/no/such/" + "folder/" * 60 + "incident.trimtab")
    dialog._check()  # the Save button's own check: a folder that does not exist
    assert "No such folder" in dialog.error.text()
    assert_fits(qtbot, dialog, dialog.buttons.buttons())
    dialog.close()
