"""The ffn method: explainer, analyses, diff metrics, claims and report section."""
