"""trimtab: a desktop cockpit for HTTP API fleets."""

__version__ = "0.1.0"
