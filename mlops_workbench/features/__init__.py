"""The feature store: definitions, the offline store (point-in-time training data) and the online store (serving)."""
