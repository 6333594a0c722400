"""Composition root: the ``trimtab`` command and its sub-commands (starts Qt through app.ui)."""
