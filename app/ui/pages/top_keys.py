"""The Limits page's top limited keys: for the selected limit, the clients it refused most
(or would have, in shadow mode), summed over the instances. GUI thread; the agents are
asked by the caller's source off the GUI thread (:meth:`Tuning.top_keys`)."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from trimtab.widgets.table import SortableTable

from ...control.top_keys import TopKeys
from ...model import format as fmt

TOP_HEADERS = ("key", "limited", "would-be-limited", "refused/s", "share", "instances")
TOP_TIPS = {
    "key": "The client as the limit tells it apart: an IP or a JWT claim in clear; an API key "
           "only as an opaque #id, never the key (the same on every instance when they share "
           "TRIMTAB_KEYID_SECRET; otherwise salted per instance, and one client behind two "
           "instances is two rows)",
    "limited": "Requests of this key refused with 429 (mode enforce) over the span",
    "would-be-limited": "Requests of this key the limit would have refused in shadow mode "
                        "over the span (they were served)",
    "refused/s": "Limited and would-be-limited per second (each instance over its own span)",
    "share": "Of the refusals (limited + would-be-limited) of every key listed",
    "instances": "The instances that refused this key",
}
NO_SOURCE = ("No control token: the top limited keys come from the agents' control API "
             "(start the demo, or set TRIMTAB_TOKEN).")
PICK = "Select a limit to see the keys it refused most."
UPGRADE = "the agent does not report top keys (upgrade the agent)"


def span_text(seconds: float) -> str:
    """``5 min`` / ``40 s``, as the what-if says its span."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _missing(result: TopKeys) -> str:
    """Instances left out of the table, and why."""
    parts = [f"{name}: {UPGRADE}" for name in result.unsupported]
    parts += [f"{name}: {why}" for name, why in sorted(result.errors.items())]
    return "; ".join(parts)


class TopKeysPanel(QWidget):
    """A title, the keys table, and one line saying why it is empty or incomplete."""

    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel("<b>Top limited keys</b>")
        self.table = SortableTable(TOP_HEADERS, tooltips=TOP_TIPS)
        self.table.sortItems(TOP_HEADERS.index("share"), Qt.SortOrder.DescendingOrder)
        self.state = QLabel(PICK)  # why the table is empty, or who is left out of it
        self.state.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.state)
        layout.addWidget(self.table, 1)
        self.shown: TopKeys | None = None

    def say(self, text: str, title: str = "<b>Top limited keys</b>") -> None:
        """No table: only ``text`` (nothing selected, asking, unavailable…)."""
        self.title.setText(title)
        self.state.setText(text)
        self.state.setVisible(True)
        self.table.set_rows([])
        self.shown = None

    def show_keys(self, result: TopKeys | Exception) -> None:
        """An answer for the selected limit (or why there is none)."""
        if isinstance(result, Exception):
            self.say(f"Top limited keys unavailable: {result}")
            return
        name = result.limit
        if not result.reporting:
            why = _missing(result)
            self.say(f"No top keys for {name}: {UPGRADE}." if not result.errors else
                     f"No top keys for {name}: {why}.", f"<b>Top limited keys of {name}</b>")
            return
        span = span_text(result.seconds)
        title = (f"<b>Top limited keys of {name}</b> · last {span} · "
                 f"{', '.join(result.reporting)}")
        missing = _missing(result)
        if not result.keys:
            self.say(f"Nobody was limited by {name} in the last {span}, nor would have been."
                     + (f" Not included: {missing}." if missing else ""), title)
            self.shown = result
            return
        self.title.setText(title)
        self.state.setText(f"Not included: {missing}." if missing else "")
        self.state.setVisible(bool(missing))
        self.table.set_rows([(k.key, [
            (k.key, k.key), (f"{k.limited:,}", float(k.limited)),
            (f"{k.shadow_limited:,}", float(k.shadow_limited)),
            ("–", -1.0) if math.isnan(k.per_second) else (fmt.rate(k.per_second), k.per_second),
            (f"{k.share:.0%}", k.share), (", ".join(k.instances), len(k.instances))])
            for k in result.keys])
        self.shown = result
