"""Loyalty backend: everything behind app.py (Chalice packages this folder with each Lambda)."""
