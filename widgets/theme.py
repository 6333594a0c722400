"""Dark and light themes for the pyqtgraph views (the Qt widgets follow the platform palette)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str
    muted: str


DARK = Theme("dark", "#111418", "#D0D4DA", "#7A828E")
LIGHT = Theme("light", "#FFFFFF", "#202428", "#8A9099")
THEMES = {t.name: t for t in (DARK, LIGHT)}
