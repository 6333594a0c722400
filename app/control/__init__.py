"""Changing a live fleet through its agents: the HTTP client, its value types, staged rollouts (Qt-
free).
"""
