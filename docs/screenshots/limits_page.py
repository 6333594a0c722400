"""Before/after shots of the Limits page on the demo's greedy client (the README's images).

Starts the demo fleet in process, shows the real window at 1366x768 on the Limits page with
the demo limit selected (its top keys beside the chart), saves ``limits-before.png`` after
BEFORE seconds (default 80), switches the limit to enforce on every instance through the
agents' control API, and saves ``limits-after.png`` AFTER seconds later (default 75).
The demo's traffic needs the CPU: on a busy host the greedy client sends less and the
charts show less.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/limits_page.py OUTDIR
"""
import os
import sys

import httpx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from trimtab.app.cli.main import make_tuning, start_collection
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.registry import index as page_index
from trimtab.app.ui.window import MainWindow
from trimtab.demo.fleet import DemoFleet

out = sys.argv[1]
BEFORE, AFTER = float(os.environ.get("BEFORE", "80")), float(os.environ.get("AFTER", "75"))
app = QApplication(sys.argv[:1])
fleet = DemoFleet()
fleet.start()
model = FleetModel()
engine = start_collection(fleet, model)
win = MainWindow(model, tuning=make_tuning(fleet.write_token, fleet.targets))
win.resize(1366, 768)
win.tabs.setCurrentIndex(page_index("limits"))
win.show()


def select_first() -> None:
    page = win.tabs.currentWidget()
    page.table.selectRow(0)


def shoot(name: str) -> None:
    select_first()
    QTimer.singleShot(6000, lambda: win.grab().save(os.path.join(out, name)))


def enforce() -> None:
    auth = {"authorization": f"Bearer {fleet.write_token}"}
    for t in fleet.targets:
        if t.kind != "instance":
            continue
        base = t.url.rsplit("/metrics", 1)[0]
        r = httpx.get(f"{base}/_trimtab/config", headers=auth)
        etag = r.headers["etag"]
        r = httpx.patch(f"{base}/_trimtab/config", headers=auth | {"if-match": etag},
                        json={"limits": {"per-key-search": {"mode": "enforce"}},
                              "reason": "greedy-bot floods /search"})
        print(t.name, r.status_code, r.text[:200], flush=True)


QTimer.singleShot(int(BEFORE * 1000) - 6000, lambda: shoot("limits-before.png"))
QTimer.singleShot(int(BEFORE * 1000) + 1000, enforce)
QTimer.singleShot(int((BEFORE + AFTER) * 1000), lambda: shoot("limits-after.png"))
QTimer.singleShot(int((BEFORE + AFTER) * 1000) + 8000, app.quit)
try:
    app.exec()
finally:
    win.close()
    engine.stop()
    fleet.stop()
