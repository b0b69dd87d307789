"""Stopping rules for the stochastic optimisers (full-batch and minibatch ADVI)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class LossPlateau:
    """Stop when the mean loss over the last `window` iterations has changed by less
    than `tolerance` (relative) from the window before — on a noisy stochastic loss
    this is what "converged" can mean; PyMC's parameter-change check stops too early
    or never at the default settings."""

    def __init__(self, window: int, tolerance: float) -> None:
        self.window = int(window)
        self.tolerance = float(tolerance)
        self.converged_at: int | None = None

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        w = self.window
        if i < 4 * w or i % w:
            return
        recent = np.mean(losses[-w:])
        before = np.mean(losses[-2 * w : -w])
        if abs(before - recent) / max(abs(recent), 1e-12) < self.tolerance:
            self.converged_at = i
            raise StopIteration(f"ADVI loss changed by < {self.tolerance:g} between windows at iteration {i}")


class TimeLimit:
    """ADVI callback: stop after `seconds` of optimisation (fit option max_seconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.t0: float | None = None  # set at the first iteration: compilation is not counted

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        elif time.perf_counter() - self.t0 > self.seconds:
            raise StopIteration(f"ADVI stopped after max_seconds={self.seconds:g} s at iteration {i}")
