"""Explanations of single-cell predictions (Grad-CAM heat maps)."""
