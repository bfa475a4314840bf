"""Stream, queue and schedule entry points (called from the shims in app.py)."""
