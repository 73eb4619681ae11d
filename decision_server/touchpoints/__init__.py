"""Touchpoints: every interaction that is not a purchase (app opens, calls, SMS clicks, complaints)."""
