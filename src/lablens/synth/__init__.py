"""Synthetic images for rare classes: how close to the real ones they are, and whether they copy them."""
