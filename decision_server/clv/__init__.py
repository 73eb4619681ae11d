"""Customer lifetime value (CLV): historical from purchases, predicted by the LTV model, per customer and for the base."""
