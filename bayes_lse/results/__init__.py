"""Stage 4, results: the posterior's accessors and prediction (`posterior`) and the
saved-model folder (`storage`).
"""
