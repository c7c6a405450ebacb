"""The sandbox boundary: the one path in or out (see boundary.py)."""
