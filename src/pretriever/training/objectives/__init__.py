"""Losses, one per file, each a pure function: scores (and weights) in, a scalar tensor out."""
