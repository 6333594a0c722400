"""Scrape history in SQLite: the store, its chunk codec, reads, rollups and schema (Qt-free)."""
