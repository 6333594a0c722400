"""The one C extension; everything else about the package is in pyproject.toml.

``_native`` holds the exposition parser's C helpers (collectors/exposition/_native.c): the
values of a scrape whose lines repeat the target's last scrape, and a first scrape's label
sets. It is optional: without a C compiler the install goes on, the parser runs its Python
paths (the same results, several times slower), and ``trimtab`` says so when it starts.
CI requires it (tests/collectors/exposition/conftest.py, ``require_native``).

An editable install compiles it once: after changing ``_native.c``, run
``.venv/bin/pip install -e . --no-deps`` (``./run.sh test`` does it too) before the tests.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("trimtab.collectors.exposition._native",
                             sources=["collectors/exposition/_native.c"], optional=True)])
