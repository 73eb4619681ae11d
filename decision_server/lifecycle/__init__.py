"""Lifecycle stages (CLM): each customer stage from the rules and the churn model, its transitions, and the event path."""
