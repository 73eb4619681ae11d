"""Customer features: one definition, a real-time path from the state row and a bulk SQL path."""
