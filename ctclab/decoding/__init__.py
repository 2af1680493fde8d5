"""Decoding: greedy and prefix beam search, the n-gram LM, error rates, tuning, CTC visuals."""
