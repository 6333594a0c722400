"""Incident snapshots (``.trimtab`` files): export, open, schema, stats, HTML report, redaction
(Qt-free).
"""
