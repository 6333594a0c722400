"""The main window's pages, in tab order: the one list the window, ``--page`` and Ctrl+1…9 use.

Qt-free on purpose: the command line reads it to build ``--page`` before Qt is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """One tab: ``key`` is the window attribute and the ``--page`` value, ``title`` the tab text."""

    key: str
    title: str


PAGES = (
    Page("overview", "Overview"),
    Page("routes", "Slow routes"),
    Page("cache", "Cache"),
    Page("balancer", "Balancer"),
    Page("traces", "Traces"),
    Page("journal", "Journal"),
    Page("fleet", "Fleet"),
    Page("slo", "SLOs"),
    Page("limits", "Limits"),
)
KEYS = tuple(page.key for page in PAGES)


def index(key: str) -> int:
    """The tab index of the page named ``key`` (one of :data:`KEYS`)."""
    return KEYS.index(key)
