"""The heads method: explainer, analyses, diff metrics, claims and report section."""
