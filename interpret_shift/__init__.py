"""interpret-shift: what instruction tuning changes inside a causal LM."""

__version__ = "0.1.0"
