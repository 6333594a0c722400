"""Dialogs that fit the screen they open on: the body scrolls, the buttons never leave it.

A dialog's content can outgrow a laptop screen (a what-if grid arriving after it opened,
two dozen servers, an error naming a long path); Qt then places the bottom, with Apply
and Cancel, off screen. A :class:`FittedDialog` keeps its body in a scroll area, its
footer (error line and buttons) outside it, and caps its size at the screen's available
area whenever it is shown or its content changes.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import QDialog, QFrame, QScrollArea, QVBoxLayout, QWidget

# Room for the window manager's frame (title bar, borders), which Qt does not count in
# the size it gives a dialog's contents.
FRAME_ALLOWANCE = QSize(16, 48)


class FittedDialog(QDialog):
    """A dialog whose body scrolls within the screen and whose footer stays visible.

    Subclasses build their body and call :meth:`install` with it and the footer widgets.
    ``screen_area`` overrides the available area (``None``: that of the dialog's screen).
    """

    screen_area: QRect | None = None

    def install(self, body: QWidget, *footer: QWidget) -> None:
        """Lay out ``body`` in a scroll area above ``footer`` (kept outside it)."""
        self.body = body
        self.scroller = QScrollArea()
        self.scroller.setWidget(body)
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.outer = QVBoxLayout(self)
        self.outer.addWidget(self.scroller, 1)
        self.footer = list(footer)
        for widget in self.footer:
            self.outer.addWidget(widget)
        body.installEventFilter(self)  # its content changed size: fit again

    def available(self) -> QRect:
        """The area the dialog must fit in, its frame included."""
        if self.screen_area is not None:
            return self.screen_area
        screen = self.screen() or QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def fit(self) -> None:
        """Cap the dialog at the available area and size it to its content within that."""
        area = self.available()
        cap = QSize(area.width(), area.height()) - FRAME_ALLOWANCE
        self.setMaximumSize(cap)
        wanted = self._wanted_size().boundedTo(cap)
        if wanted != self.size():
            self.resize(wanted)
        frame = self.frameGeometry()
        if not area.contains(frame):  # a grown dialog may stick out: bring it back in
            self.move(max(area.left(), min(frame.left(), area.right() - frame.width())),
                      max(area.top(), min(frame.top(), area.bottom() - frame.height())))

    def _wanted_size(self) -> QSize:
        """Body and footer without scrolling (the scroll area's own hint is capped small)."""
        margins = self.outer.contentsMargins()
        body = self.body.sizeHint()
        bar = self.scroller.verticalScrollBar().sizeHint().width()
        width, height = body.width() + bar, body.height()
        for widget in self.footer:
            if not widget.isHidden():
                hint = widget.sizeHint()
                width = max(width, hint.width())
                height += hint.height() + self.outer.spacing()
        return QSize(width + margins.left() + margins.right(),
                     height + margins.top() + margins.bottom())

    def showEvent(self, event: QShowEvent) -> None:
        self.fit()
        super().showEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is getattr(self, "body", None) and event.type() == QEvent.Type.LayoutRequest \
                and self.isVisible():
            self.fit()
        return super().eventFilter(watched, event)
