"""Customer analytics: RFM, CLV, customer value, lifecycle; per customer and for the whole base."""
