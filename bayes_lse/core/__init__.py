"""Bottom layer: errors, JSON-able configs and their hash, lazy imports, atomic file writes.
Imports nothing else from bayes_lse.
"""
