"""lablens.train."""
