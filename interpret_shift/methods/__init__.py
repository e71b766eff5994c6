"""The built-in methods, one package each, shaped exactly like a third-party plugin:
``explainer`` (what is computed per model), ``analysis`` (the statistics), ``metrics`` (diff
metrics), ``claims`` (headline findings), ``section`` and ``plots`` (the report), and
``plugin`` (the hook implementations that register all of it)."""
