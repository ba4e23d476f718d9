"""Synthetic city and clips, for tests, the demo and evaluation; never imported by live code."""
