"""Customer value (CVM): the 0-100 value score over CLV, RFM and engagement, its segment, and their statistics."""
