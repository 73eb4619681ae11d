"""The real-time next-best-action decision, its log, responses and the learning they feed."""
