"""Balancing: the built-in proxy, its upstream pool and policies, the HAProxy adapter, one control
API.
"""
