"""Post-hoc analyses of explanations: the maths that turns raw maps into the paper's statistics."""
