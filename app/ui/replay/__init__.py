"""Read-only replay windows: the window, its worker thread, comparisons."""
