"""Token distribution shift: how often the tuned model says what the base model would not."""
