"""Stage 5, diagnostics: convergence and predictive checks on identified quantities.
"""
