"""The parser's C helpers (``_native.c``), where the install could build them.

Built by ``setup.py`` at install; optional, because a machine without a C compiler and
Python's headers can still run trimtab: every helper has a Python path that returns the same
result (the tests run both). ``ENABLED`` says whether the helpers are used; the tests turn
it off to run the Python paths.

- ``read_values``: a repeated scrape's values (``TargetParser._fast_c``);
- ``label_sets``: a first scrape's label sets (``body._new_tails``).
"""

from __future__ import annotations

from types import ModuleType

c: ModuleType | None
try:
    from . import _native as c
except ImportError:  # pragma: no cover - CI builds it (tests/collectors/exposition/conftest.py)
    c = None

ENABLED = c is not None
