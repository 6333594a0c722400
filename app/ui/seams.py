"""What the main window asks of the collaborators handed to it from outside.

:class:`~trimtab.app.ui.window.MainWindow` knows nothing of replay windows, the command line or
the export worker; they give it objects after it is built (``ui.file_actions``, ``cli.main``,
``ui.export``). These types say exactly what the window (and its subclasses) use of them, so
mypy checks the real classes against them and the window declares every such attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from trimtab.collectors.scrape import ScrapeTarget


class Launcher(Protocol):
    """Opens replay windows from a window (``ReplayLauncher``); the window only stops it,
    when it closes, so that the replay windows it opened close with it."""

    def stop(self) -> None:
        """Cancel loads in progress and close the windows opened."""
        ...


class RunningJob(Protocol):
    """A worker the window keeps alive until it ends (``ExportJob``): a QObject freed on its
    worker thread can deadlock with the GUI thread. A second one waits for ``finished``."""

    def finished(self) -> bool:
        """Whether the job is over (written, failed or cancelled)."""
        ...


#: Opens dropped snapshot files (one replay window each).
OpenPaths: TypeAlias = Callable[[list[str]], object]

#: The scrape targets a snapshot export lists (and whose tokens it redacts): a list, or a
#: callable giving the current one (called on the export's worker thread).
ExportTargets: TypeAlias = "list[ScrapeTarget] | Callable[[], list[ScrapeTarget]]"
