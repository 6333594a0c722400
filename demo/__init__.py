"""The demo fleet: its API app, the processes and the traffic generator (imports only
trimtab.agent).
"""
