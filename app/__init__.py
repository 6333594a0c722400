"""trimtab app: composition root, CLI, Qt-free models and the Qt window."""
