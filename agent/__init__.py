"""trimtab agent: runs beside API instances (middleware, balancer, control API).

Never imports Qt, trimtab.app, trimtab.widgets or trimtab.collectors.
"""
