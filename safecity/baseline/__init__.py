"""The usual level of each sensor and camera, and what departs from it."""
