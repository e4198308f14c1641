"""Renderers: machine formats (formats.py) and the Rich terminal views (table.py)."""
