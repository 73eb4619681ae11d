"""Synthetic demo data: a realistic, reproducible customer base for demos, tests and benchmarks."""
