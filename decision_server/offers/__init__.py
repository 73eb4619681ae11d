"""The offer catalog: offers, their treatments per channel, and sync from an external catalog."""
