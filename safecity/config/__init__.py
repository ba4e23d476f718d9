"""Validated configuration: the city (time zone, calendars) and the camera installation."""
