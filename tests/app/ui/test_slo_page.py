"""The SLOs page on a real window (offscreen): a bad definition typed into *Add SLO…* is
refused with the reason and saves nothing; a good one is saved as OpenSLO, evaluated from
the real history store, sorted by budget left, and a fast burn reaches the status bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from trimtab.app.model.fleet import FleetModel
from trimtab.app.slo import file as slo_file
from trimtab.app.store.store import Store
from trimtab.app.ui.pages.slo import SloPage
from trimtab.widgets.slo_dialog import SloDialog

from tests.app.slo.history import AVAIL, LATENCY, T0, fill


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "history.sqlite") as s:
        fill(s, minutes=20, slow_from=5, slow=4.0)  # api-2: 4 of 10 over 0.25 s → 20 %
        yield s


def _dialog(qtbot, page: SloPage) -> SloDialog:
    dialog = SloDialog(["/search", "/orders"], page.check, page)
    qtbot.addWidget(dialog)
    return dialog


@pytest.mark.parametrize(("field", "text", "says"), [
    ("objective", "100", "below 1"),
    ("objective", "-5", "share"),
    ("objective", "abc", "must be numbers"),
    ("threshold", "-5", "threshold"),
    ("threshold", "", "must be numbers"),
    ("threshold", "99999999", "threshold"),
    ("window", "0.001", "1 h to 92 d"),
    ("name", "Search Latency", "lowercase"),
])
def test_a_bad_definition_is_refused_and_enter_does_nothing(qtbot, tmp_path: Path, field: str,
                                                            text: str, says: str) -> None:
    page = SloPage(FleetModel(), tmp_path / "slos.yaml")
    qtbot.addWidget(page)
    dialog = _dialog(qtbot, page)
    edit = getattr(dialog, field)
    edit.clear()
    qtbot.keyClicks(edit, text)
    assert not dialog.add_button.isEnabled()
    assert says in dialog.error.text()
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert dialog.result() == 0 and not dialog.isVisible()
    assert not (tmp_path / "slos.yaml").exists()


def test_a_name_in_use_is_refused(qtbot, tmp_path: Path) -> None:
    page = SloPage(FleetModel(), tmp_path / "slos.yaml")
    qtbot.addWidget(page)
    page.add(LATENCY)
    dialog = _dialog(qtbot, page)
    qtbot.keyClicks(dialog.name, LATENCY.name)
    assert "exists already" in dialog.error.text() and not dialog.add_button.isEnabled()


def test_add_evaluate_sort_and_notify(qtbot, tmp_path: Path, store: Store) -> None:
    from trimtab.app.ui.window import MainWindow

    model = FleetModel(store=store)
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    page = win.slo
    assert win.tabs.tabText(win.tabs.indexOf(page)) == "SLOs"
    page.path = tmp_path / "slos.yaml"

    def fill_dialog() -> None:
        dialog = page.findChild(SloDialog)
        dialog.route.setCurrentText("/search")
        dialog.objective.setText("99")
        dialog.threshold.setText("250")
        assert dialog.add_button.isEnabled(), dialog.error.text()
        dialog.add_button.click()

    QTimer.singleShot(0, fill_dialog)
    page.ask_add()
    page.add(AVAIL)
    assert [s.name for s in slo_file.load(page.path)] == ["search-latency", "search-ok"]
    with qtbot.waitSignal(page.fast_burn, timeout=30_000) as burn:
        page.start_evaluation(T0 + 20 * 60)
        qtbot.waitUntil(page.collect, timeout=30_000)
    assert burn.args[0] == "search-latency" and "14.4" in burn.args[1]
    win.notify_fast_burn(*burn.args)
    assert "search-latency" in win.statusBar().currentMessage()
    page._show()
    # most budget spent first: latency burns 10 budgets (20 % of api-2), availability 2.5
    assert page.table.column_texts(0) == ["search-latency", "search-ok"]
    texts = dict(zip(page.table.column_texts(0), page.table.column_texts(6)))
    assert "1h/5m > 14.4×" in texts["search-latency"]
    assert "exact at le=0.25" in page.table.column_texts(2)[0]
    win.tabs.setCurrentWidget(page)
    win.grab().save(str(tmp_path / "slo_page.png"))


def test_a_down_prometheus_source_is_said_not_taken_for_no_traffic(qtbot, tmp_path: Path) -> None:
    from trimtab.agent.procs import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    page = SloPage(FleetModel(), tmp_path / "slos.yaml",
                   prometheus=lambda: [("prom", dead, {})])
    qtbot.addWidget(page)
    page.add(LATENCY)
    page.start_evaluation(T0)  # offers the source
    assert page.source.count() == 2 and "Prometheus prom" in page.source.itemText(1)
    page.source.setCurrentIndex(1)
    page.start_evaluation(T0)
    qtbot.waitUntil(page.collect, timeout=30_000)
    page._show()
    assert "connection refused" in page.hint.text() and page.statuses == []


def test_export_writes_openslo_and_rules(qtbot, tmp_path: Path) -> None:
    page = SloPage(FleetModel(), None)
    qtbot.addWidget(page)
    page.add(LATENCY)
    assert "not saved" in page.hint.text()
    slos, rules = page.export_files(tmp_path / "mine.yaml")
    assert slo_file.load(slos) == [LATENCY]
    assert rules.name == "mine-rules.yml" and "trimtab_slo:error_ratio:rate1h" in rules.read_text()
    other = SloPage(FleetModel(), tmp_path / "theirs.yaml")
    qtbot.addWidget(other)
    other.import_file(slos)
    assert other.slos == [LATENCY] and slo_file.load(tmp_path / "theirs.yaml") == [LATENCY]


def test_edit_an_slo_in_place(qtbot, tmp_path: Path) -> None:
    page = SloPage(FleetModel(), tmp_path / "slos.yaml")
    qtbot.addWidget(page)
    page.add(LATENCY)
    page.add(AVAIL)
    page.statuses = []
    page._show()
    dialog = SloDialog(["/search"], lambda f: page.check(f, replacing=LATENCY.name), page)
    qtbot.addWidget(dialog)
    from dataclasses import asdict

    dialog.prefill(asdict(LATENCY))
    assert dialog.add_button.isEnabled() and dialog.add_button.text() == "Save"
    assert (dialog.objective.text(), dialog.threshold.text()) == ("99", "250")
    dialog.name.setText(AVAIL.name)  # taking another SLO's name is refused
    assert "exists already" in dialog.error.text() and not dialog.add_button.isEnabled()
    dialog.name.setText(LATENCY.name)
    dialog.threshold.setText("300")
    fields = dialog.fields()
    assert fields is not None and page.check(fields, replacing=LATENCY.name) is None
    from trimtab.app.slo.definition import SLO

    page.replace(LATENCY.name, SLO(**fields))
    saved = slo_file.load(tmp_path / "slos.yaml")
    assert [s.name for s in saved] == [LATENCY.name, AVAIL.name]
    assert saved[0].threshold_s == pytest.approx(0.3)
