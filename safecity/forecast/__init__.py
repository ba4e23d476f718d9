"""Forecasting mass gatherings from history and calendars."""
