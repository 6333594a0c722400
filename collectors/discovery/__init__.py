"""Service discovery the way Prometheus does it: file_sd, DNS (A/AAAA/SRV) and HTTP SD.

Each source yields :class:`~trimtab.collectors.discovery.groups.Discovered` targets (a
scrape URL, labels, the agent's control endpoint); :class:`~.runner.DiscoveryRunner`
refreshes every source on its own interval in one background thread and reports the
full current list of each. Applying the lists (who joined, who left) is the app's job
(``trimtab.app.targets.discovery``).
"""
