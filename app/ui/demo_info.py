"""The demo's write token in the window: a status-bar field and Help → About this demo….

Only the demo shows a token: it is fresh per run and valid only for the demo's own
loopback agents, and an operator needs it to try the control API (curl) beside the
cockpit. A real fleet's tokens are never shown.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox


def about_text(token: str, curl: str) -> str:
    """The About box's text: what the token is for and a command to try it."""
    return (f"This is trimtab's demo fleet: three API instances, a balancer and traffic, on "
            f"loopback ports, stopped with the window.\n\nWrite token of this run (the agents "
            f"accept it for changes):\n{token}\n\nTry it from a shell:\n{curl}")


def show_demo_info(window: QMainWindow, token: str, curl: str) -> None:
    """Add the token to ``window``'s status bar and an About entry to its Help menu."""
    label = QLabel(f"demo write token: {token}")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setToolTip(f"Select to copy. Try it:\n{curl}")
    window.statusBar().addPermanentWidget(label)
    action = QAction("About this demo…", window)
    action.triggered.connect(lambda: _about(window, token, curl))
    window.menuBar().addMenu("Help").addAction(action)
    window.demo_token_label = label  # type: ignore[attr-defined]  # for tests and screenshots
    window.demo_about_action = action  # type: ignore[attr-defined]


def _about(window: QMainWindow, token: str, curl: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Information, "About this demo", about_text(token, curl),
                      QMessageBox.StandardButton.Ok, window)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.open()
