"""Harnesses that score detectors, fusion and forecasts against ground truth."""
