"""The snapshot report's chart images: pyqtgraph drawn offscreen into PNG bytes.

A :data:`~trimtab.app.snapshot.report.ChartRenderer`; the report itself stays Qt-free and
the command line passes this one in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..snapshot.report import COLOURS, utc


def png_chart(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, base: float,
              marks: Sequence[float]) -> bytes:
    """PNG bytes of a line chart; x in minutes since ``base``, a dashed line at each mark."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a report needs no display
    import pyqtgraph as pg
    from PySide6.QtCore import QBuffer, QIODevice, Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    plot = pg.PlotWidget(background="w")
    try:
        plot.resize(960, 300)
        plot.setTitle(title, color="#222")
        plot.setLabel("bottom", f"minutes since {utc(base)}")
        plot.addLegend(offset=(10, 10))
        for i, (name, (t, v)) in enumerate(curves.items()):
            plot.plot((t - base) / 60, v, name=name, connect="finite",
                      pen=pg.mkPen(COLOURS[i % len(COLOURS)], width=1))
        for m in marks:
            plot.addItem(pg.InfiniteLine((m - base) / 60, angle=90,
                                         pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)))
        app.processEvents()
        buf = QBuffer()
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        plot.grab().save(buf, "PNG")
        return bytes(buf.data().data())
    finally:
        plot.deleteLater()
