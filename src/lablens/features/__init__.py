"""Feature extractors (handcrafted and deep), registered by name and combined by spec strings."""
