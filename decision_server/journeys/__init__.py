"""Journeys: the journey stage's history, manual moves and the funnel statistics."""
