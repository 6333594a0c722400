"""Without the parser's C value reader the cockpit still starts, and says why scraping costs more."""

from __future__ import annotations

import pytest
from trimtab.app.cli import main as cli
from trimtab.collectors.exposition import target

from tests.collectors.exposition.conftest import require_steady_c


def test_no_note_when_the_reader_is_built() -> None:
    require_steady_c()
    assert cli.steady_reader_note() is None


def test_the_note_names_the_cause_and_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target, "STEADY_IN_C", False)
    note = cli.steady_reader_note()
    assert note is not None
    assert "C value reader is not built" in note and "gcc" in note and "python3-dev" in note
