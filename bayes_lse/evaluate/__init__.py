"""Stage 8, evaluate: offline protocols (`protocols`), IRT / PFA baselines
(`baselines`), metrics (`metrics`), many fits at once (`distributed`).
"""
