"""The snapshot report's chart images: pyqtgraph drawn offscreen into PNG bytes.

A :data:`~trimtab.app.snapshot.report.ChartRenderer`; the report itself stays Qt-free and
the command line passes this one in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..snapshot.report import COLOURS, Mark, utc


def png_chart(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, base: float,
              marks: Sequence[Mark]) -> bytes:
    """PNG bytes of a line chart; x in minutes since ``base``; a change marker at each mark,
    labelled as on the cockpit's charts (labels in rows that never overlap). NaN is a gap."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a report needs no display
    import pyqtgraph as pg
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication
    from trimtab.widgets.marker_layer import ChangeMarkers

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
        markers = ChangeMarkers(plot.getPlotItem(), lambda key: None)
        markers.set_veil(QColor(255, 255, 255, 220))
        markers.set([(f"{i}", (t - base) / 60, label) for i, (t, label) in enumerate(marks)])
        app.processEvents()
        buf = QBuffer()
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        plot.grab().save(buf, "PNG")
        return bytes(buf.data().data())
    finally:
        plot.deleteLater()
