"""Segments the business defines by a rule condition: definitions, memberships, sizes over time."""
