"""Small ASGI apps instrumented by other packages, served by uvicorn in the mapping tests.

Every app serves ``/users/{uid}`` (sleeps ``?ms=`` milliseconds, so latency is known),
``/fail`` (503) and ``/metrics``.
"""
