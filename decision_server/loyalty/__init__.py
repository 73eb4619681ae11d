"""The loyalty program: tiers, the points ledger, rewards and redemptions."""
