"""Data model, storage and readers: what every other stage reads and writes."""
