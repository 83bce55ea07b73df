"""Whole fields → detected cells → per-cell classes → a sample-level answer (``lablens analyze``)."""
