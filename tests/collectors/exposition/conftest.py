"""Each parser test starts with nothing learnt by an earlier test's parsers.

The parsers of a process share what they learnt (``SharedCaches``); without this, a test
meant to exercise a first scrape's label-set parsing could find those label sets cached
by another test and never run the code it checks.

``steady_path`` runs a module's tests once with the C value reader and once without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from trimtab.collectors.exposition import forget_shared_caches, target


@pytest.fixture(autouse=True)
def _cold_parsers() -> Iterator[None]:
    forget_shared_caches()
    yield
    forget_shared_caches()


def require_steady_c() -> None:
    """The C value reader (``_steady``) is built: fail under CI, which must build it; skip
    elsewhere (an install without a C compiler reads values in Python)."""
    if not target.STEADY_IN_C:
        message = "trimtab.collectors.exposition._steady is not built (no C compiler at install?)"
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must build it (run.sh installs gcc)")
        pytest.skip(message)


@pytest.fixture(params=["c", "python"])
def steady_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test of a module that uses it runs twice: a repeated scrape's values read by the
    C reader (``_steady.read_values``), then by the Python path alone. Both must answer alike."""
    if request.param == "c":
        require_steady_c()
    else:
        monkeypatch.setattr(target, "STEADY_IN_C", False)
    return request.param
