"""Compare methods on identical grouped folds: per-fold metrics, summaries, ranks, pairwise tests, report."""
