"""trimtab agent: runs beside API instances (middleware, balancer, control API, demo fleet).

Never imports Qt, trimtab.app, trimtab.widgets or trimtab.collectors.
"""
