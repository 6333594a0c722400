"""The only part of app that imports Qt or trimtab.widgets: windows, pages, dialogs' glue,
workers."""
