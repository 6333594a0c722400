"""The main window's pages, one module per page, and the page registry."""
