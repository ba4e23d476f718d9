"""Fusing events from every source into incidents."""
