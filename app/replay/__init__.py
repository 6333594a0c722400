"""Replay of recorded history (store, snapshot, Prometheus) into a model; comparisons and change
markers (Qt-free).
"""
