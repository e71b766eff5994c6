"""Activation-difference lens: where in the layers the two models differ, and in which words."""
