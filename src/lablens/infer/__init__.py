"""lablens.infer."""
