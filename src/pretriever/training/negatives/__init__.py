"""Negative documents for training: static hard negatives mixed with random ones (STAR), dynamic
ones re-mined with the current query encoder (ADORE); one module each."""
