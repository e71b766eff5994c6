"""Cross-model activation patching: which layers carry the change, causally."""
