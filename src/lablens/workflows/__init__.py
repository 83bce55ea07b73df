"""End-to-end workflows behind the CLI verbs and the Python API."""
