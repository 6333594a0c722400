"""Each parser test starts with nothing learnt by an earlier test's parsers.

The parsers of a process share what they learnt (``SharedCaches``); without this, a test
meant to exercise a first scrape's label-set parsing could find those label sets cached
by another test and never run the code it checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from trimtab.collectors.exposition import forget_shared_caches


@pytest.fixture(autouse=True)
def _cold_parsers() -> Iterator[None]:
    forget_shared_caches()
    yield
    forget_shared_caches()
