"""A Prometheus-compatible server as a data source: its HTTP API client and the source."""
