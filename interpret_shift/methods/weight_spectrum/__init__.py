"""Weight-delta spectrum: how many directions the tuning changed, and what they write."""
