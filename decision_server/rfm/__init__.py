"""RFM: recency, frequency and monetary quintile scores 1-5 of every buyer, their segment, and the runs that set the cut points."""
