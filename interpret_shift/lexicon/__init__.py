"""The lexicon: word lists and word similarity, shared by the weight-only methods."""
