"""lablens.data."""
