"""The Qt-free live model: FleetModel, what it extracts from a scrape, ring buffers, formatting."""
