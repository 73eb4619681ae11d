"""The rules engine: rule files parsed by our own safe parser, compiled to durable-rules, Python and numpy."""
