"""Each parser test starts with nothing learnt by an earlier test's parsers.

The parsers of a process share what they learnt (``SharedCaches``); without this, a test
meant to exercise a first scrape's label-set parsing could find those label sets cached
by another test and never run the code it checks.

``reader`` runs a module's tests once with the parser's C helpers and once without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from trimtab.collectors.exposition import forget_shared_caches, native


@pytest.fixture(autouse=True)
def _cold_parsers() -> Iterator[None]:
    forget_shared_caches()
    yield
    forget_shared_caches()


def require_native() -> None:
    """The parser's C helpers (``_native``) are built: fail under CI, which must build them;
    skip elsewhere (an install without a C compiler parses in Python)."""
    if not native.ENABLED:
        message = "trimtab.collectors.exposition._native is not built (no C compiler at install?)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must build it (run.sh installs gcc)")
        pytest.skip(message)


@pytest.fixture(params=["c", "python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test of a module that uses it runs twice: with the parser's C helpers (a repeated
    scrape's values, a first scrape's label sets), then with its Python paths alone. Both
    must answer alike."""
    if request.param == "c":
        require_native()
    else:
        monkeypatch.setattr(native, "ENABLED", False)
    return request.param
