"""Replay scrubber: a slider over a time window, play/pause, speed and the current time."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

SPEEDS = (1, 5, 10, 30, 60)
TICK_MS = 250  # how often playing asks for the clock to move


def clock_text(unix: float) -> str:
    """Local wall-clock time of ``unix`` with the date, e.g. ``2026-11-26 21:04:05``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


class ReplayScrubber(QWidget):
    """Emits ``seek_requested(t)`` (unix seconds) when dragged, and while playing.

    The owner moves the replay clock and reports it back with :meth:`set_clock`;
    playing asks for ``clock + speed × tick`` each tick, so a slow replay slows
    playback down rather than queueing requests.
    """

    seek_requested = Signal(float)
    playing_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start = self.end = 0.0
        self.clock = 0.0
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play the window from the current time (K)")
        self.play_button.toggled.connect(self.set_playing)
        self.speed_box = QComboBox()
        for speed in SPEEDS:
            self.speed_box.addItem(f"{speed}×", speed)
        self.speed_box.setToolTip("Replay speed: seconds of the window per second")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Drag to move the replay clock")
        self.slider.valueChanged.connect(self._slider_moved)
        self.time_label = QLabel("–")
        self.time_label.setMinimumWidth(260)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        for widget in (self.play_button, self.speed_box):
            layout.addWidget(widget)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.time_label)
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._setting = False

    @property
    def speed(self) -> int:
        return int(self.speed_box.currentData())

    def set_speed(self, speed: int) -> None:
        self.speed_box.setCurrentIndex(SPEEDS.index(speed))

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def set_window(self, start: float, end: float) -> None:
        """The slider spans ``[start, end]`` (unix s) in whole seconds."""
        self.start, self.end = start, end
        self._setting = True
        self.slider.setRange(0, max(1, round(end - start)))
        self._setting = False

    @Slot(float)
    def set_clock(self, t: float) -> None:
        """Show the replay clock (from the owner); a drag in progress keeps the handle."""
        self.clock = t
        if not self.slider.isSliderDown():
            self._setting = True
            self.slider.setValue(round(t - self.start))
            self._setting = False
        self.time_label.setText(f"{clock_text(t)}  ({t - self.start:.0f} / "
                                f"{self.end - self.start:.0f} s)")
        if self.playing and t >= self.end:
            self.set_playing(False)

    @Slot(bool)
    def set_playing(self, playing: bool) -> None:
        if playing and self.clock >= self.end:  # at the end, play starts over
            self.seek_requested.emit(self.start)
            self.clock = self.start
        if playing != self.playing:
            if playing:
                self._timer.start()
            else:
                self._timer.stop()
            self.playing_changed.emit(playing)
        if self.play_button.isChecked() != playing:
            self.play_button.setChecked(playing)
        self.play_button.setText("Pause" if playing else "Play")

    @Slot()
    def toggle(self) -> None:
        self.set_playing(not self.playing)

    @Slot()
    def _tick(self) -> None:
        self.seek_requested.emit(min(self.end, self.clock + self.speed * TICK_MS / 1000.0))

    @Slot(int)
    def _slider_moved(self, value: int) -> None:
        if not self._setting:
            self.seek_requested.emit(self.start + value)
