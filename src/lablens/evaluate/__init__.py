"""lablens.evaluate."""
