"""Customers: who they are, their consent per channel, and the state row the real-time path reads."""
