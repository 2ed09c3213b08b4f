"""edgefleet: the vocabulary every service shares (models, tokens, config loading)."""

__version__ = "0.1.0"
