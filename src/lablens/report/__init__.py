"""lablens.report."""
