"""The targets file and the manager that keeps targets, collectors and model in step (Qt-free)."""
