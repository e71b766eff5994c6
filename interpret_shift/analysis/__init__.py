"""Post-hoc analyses of explanations: the maths that turns raw maps into the paper's statistics."""


def layers_label(first: int, last: int) -> str:
    """A layer range as text: "layer 3", "layers 0-3" (inclusive)."""
    return f"layer {first}" if first == last else f"layers {first}-{last}"
