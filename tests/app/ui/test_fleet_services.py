"""The Fleet page names each target's service (issue 21.1), and Add target… asks for it.

Real widgets, a real targets file and a real scrape engine on loopback ports (the targets'
ports are closed: a failed scrape makes a health row as a successful one does).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from PySide6.QtCore import QTimer
from trimtab.agent.procs import free_port
from trimtab.app.model.fleet import FleetModel
from trimtab.app.targets.manager import TargetManager
from trimtab.app.ui.pages.fleet import FLEET_HEADERS, FleetPage
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget
from trimtab.widgets.target_dialog import TargetDialog

SERVICE = FLEET_HEADERS.index("service")


def _dead(name: str, service: str = "") -> ScrapeTarget:
    return ScrapeTarget(name, f"http://127.0.0.1:{free_port()}/metrics", service=service)


def _services(page: FleetPage) -> dict[str, str]:
    names = page.table.column_texts(FLEET_HEADERS.index("target"))
    return dict(zip(names, page.table.column_texts(SERVICE), strict=True))


def test_services_show_in_their_column_and_the_unnamed_one_reads_a_dash(qtbot) -> None:
    model = FleetModel()
    targets = [_dead("shop-1", "shop"), _dead("auth-1", "auth"), _dead("legacy")]
    engine = ScrapeEngine(targets, model.ingest, on_cycle=model.tick).start()
    page = FleetPage(model)
    qtbot.addWidget(page)
    try:
        def three_rows() -> None:
            page.refresh(0.0)
            assert page.table.rowCount() == 3
        qtbot.waitUntil(three_rows, timeout=30_000)
        assert _services(page) == {"shop-1": "shop", "auth-1": "auth", "legacy": "—"}
        assert not page.table.isColumnHidden(SERVICE)
    finally:
        engine.stop()


def test_one_unnamed_service_hides_the_column(qtbot) -> None:
    model = FleetModel()
    engine = ScrapeEngine([_dead("api-1"), _dead("api-2")], model.ingest,
                          on_cycle=model.tick).start()
    page = FleetPage(model)
    qtbot.addWidget(page)
    try:
        def two_rows() -> None:
            page.refresh(0.0)
            assert page.table.rowCount() == 2
        qtbot.waitUntil(two_rows, timeout=30_000)
        assert page.table.isColumnHidden(SERVICE)  # the demo looks as it did
    finally:
        engine.stop()


def test_add_target_saves_the_service_typed(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text("# my fleet\n")
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model)
    page = FleetPage(model, manager)
    qtbot.addWidget(page)
    url = f"http://127.0.0.1:{free_port()}/metrics"

    def fill() -> None:
        dialog = page.findChild(TargetDialog)
        assert dialog is not None
        dialog.name.setText("shop-1")
        dialog.url.setText(url)
        dialog.service_name.setText("shop")
        dialog.ok.click()

    try:
        QTimer.singleShot(300, fill)
        page.ask_add()
        saved = tomllib.loads(path.read_text())["target"]
        assert [(t["name"], t["url"], t.get("service")) for t in saved] == [("shop-1", url, "shop")]
        assert path.read_text().startswith("# my fleet")

        def shown() -> None:
            page.refresh(0.0)
            assert _services(page) == {"shop-1": "shop"}
        qtbot.waitUntil(shown, timeout=30_000)
    finally:
        manager.close()
        engine.stop()


def test_a_bad_service_is_refused_and_nothing_is_saved(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text("# my fleet\n")
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model)
    page = FleetPage(model, manager)
    qtbot.addWidget(page)
    seen: list[str] = []

    def fill() -> None:
        dialog = page.findChild(TargetDialog)
        assert dialog is not None
        if seen:  # the second time round: the error shown, give up
            dialog.reject()
            return
        dialog.name.setText("shop-1")
        dialog.url.setText(f"http://127.0.0.1:{free_port()}/metrics")
        dialog.service_name.setText("shop · eu")  # the route key's separator: ambiguous
        QTimer.singleShot(300, lambda: (seen.append(dialog.error.text()), fill()))
        dialog.ok.click()

    try:
        QTimer.singleShot(300, fill)
        page.ask_add()
        assert seen and "service" in seen[0]
        assert path.read_text() == "# my fleet\n"
    finally:
        manager.close()
        engine.stop()


def test_the_service_row_is_hidden_for_a_prometheus_source(qtbot) -> None:
    dialog = TargetDialog(("instance", "balancer", "prometheus"))
    qtbot.addWidget(dialog)
    dialog.service_name.setText("shop")
    assert dialog.service() == "shop"
    dialog.kind.setCurrentText("prometheus")
    assert not dialog.form.isRowVisible(dialog.service_name)
    assert dialog.service() == ""  # its series name their job themselves
