"""A snapshot that cannot be opened at a long path: the message box wraps the path (it once
grew 804 px wide for a 400-character path) and still gives the exact path to copy."""

from __future__ import annotations

from pathlib import Path

from trimtab.app.ui.replay.window import ReplayLauncher, breakable


def test_a_long_missing_path_wraps_and_its_exact_text_is_kept(qtbot, tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"incident-folder-{i:02d}" for i in range(20)])
    path = deep / "checkout-outage-2026-12-06.trimtab"  # not there
    assert len(str(path)) > 400
    launcher = ReplayLauncher(None)
    launcher.open_file(path)
    qtbot.waitUntil(lambda: bool(launcher.last_error), timeout=20_000)
    box = launcher.error_box
    assert box is not None
    qtbot.waitUntil(box.isVisible, timeout=5_000)
    assert box.width() <= 700, box.width()
    assert path.name in box.text()
    assert str(path) in box.detailedText()  # copied from "Show Details…" without break marks
    assert "\u200b" not in box.detailedText()
    box.close()


def test_short_words_are_left_alone() -> None:
    assert breakable("cannot open /tmp/a.trimtab: no such file") == \
        "cannot open /tmp/a.trimtab: no such file"
    long = "/" + "/".join(["abcdefghij"] * 8)
    assert breakable(f"x {long}").replace("\u200b", "") == f"x {long}"
    assert breakable(long).count("\u200b") == 8
