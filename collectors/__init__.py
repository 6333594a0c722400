"""trimtab collectors: scraping, parsing and Prometheus semantics. Never imports Qt."""
