"""Service level objectives: definitions (OpenSLO), SLIs from histogram buckets, burn rates
and error budgets, and Prometheus rules that keep the promise when the cockpit is closed.

Qt-free; it reads the model's and the store's samples and never writes them.
"""
