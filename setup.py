"""The one C extension; everything else about the package is in pyproject.toml.

``_steady`` reads the values of a scrape whose lines repeat the target's last scrape
(collectors/exposition/_steady.c). It is optional: without a C compiler the install goes on,
the parser reads those values in Python (the same results, about three times slower on a body
whose values all move), and ``trimtab`` says so in its log. CI requires it
(tests/collectors/exposition/test_steady_c.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("trimtab.collectors.exposition._steady",
                             sources=["collectors/exposition/_steady.c"], optional=True)])
