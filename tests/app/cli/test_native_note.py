"""Without the parser's C helpers the cockpit still starts, and says why scraping costs more."""

from __future__ import annotations

import pytest
from trimtab.app.cli import main as cli
from trimtab.collectors.exposition import native

from tests.collectors.exposition.conftest import require_native


def test_no_note_when_the_helpers_are_built() -> None:
    require_native()
    assert cli.native_note() is None


def test_the_note_names_the_cause_and_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "ENABLED", False)
    note = cli.native_note()
    assert note is not None
    assert "C helpers are not built" in note and "gcc" in note and "python3-dev" in note
