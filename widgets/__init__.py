"""trimtab widgets: thin Qt/pyqtgraph views. They render what they are given and emit intent.

Never imports trimtab.app or trimtab.collectors.
"""
