"""Stopping rules for the stochastic optimisers (full-batch and minibatch ADVI)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: the second stage's learning rate as a fraction of the first's, in the two-stage rule
#: of the minibatch fits (minibatch ADVI, amortised ADVI)
LR_DECAY = 0.1
#: the noise-aware plateau: the change between two window means counts as noise below this
#: many standard errors of their difference
#: (1.0 stopped the amortised fit of bench_amortised_vs_advi seed 1 at 4,500 iterations instead
#: of 4,000, with the same held-out AUC, 0.8796)
NOISE_SE = 2.0


class LossPlateau:
    """Stop when the mean loss over the last `window` iterations has changed by less
    than `tolerance` (relative) from the window before — on a noisy stochastic loss
    this is what "converged" can mean; PyMC's parameter-change check stops too early
    or never at the default settings.

    With ``noise_aware=True`` it also stops when the change between the two window means
    is within two standard errors of their difference (each window's variance over its
    length): a loss whose step-to-step noise is larger than any trend left cannot tell
    a further decrease from noise.  The amortised fit uses it: its per-step loss is a
    minibatch estimate with a relative sd of a few per cent, so the relative change of
    a 500-step mean cannot fall below 1e-4 except by chance.
    """

    def __init__(self, window: int, tolerance: float, noise_aware: bool = False) -> None:
        self.window = int(window)
        self.tolerance = float(tolerance)
        self.noise_aware = bool(noise_aware)
        self.converged_at: int | None = None
        self.reason = ""

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        w = self.window
        if i < 4 * w or i % w:
            return
        recent_w, before_w = losses[-w:], losses[-2 * w : -w]
        recent, before = np.mean(recent_w), np.mean(before_w)
        change = abs(before - recent)
        if change / max(abs(recent), 1e-12) < self.tolerance:
            self.reason = f"relative change {change / max(abs(recent), 1e-12):.2g} < tolerance {self.tolerance:g}"
        elif self.noise_aware and change < NOISE_SE * float(np.sqrt((np.var(recent_w) + np.var(before_w)) / w)):
            self.reason = f"change {change:.3g} within {NOISE_SE:g} standard errors of the window means"
        else:
            return
        self.converged_at = i
        raise StopIteration(f"ADVI loss levelled off at iteration {i} ({self.reason})")


class TwoStagePlateau:
    """The rule of the minibatch fits (minibatch ADVI, amortised ADVI): the first learning
    rate until the loss levels off (`LossPlateau`) or 2/3 of the budget (iterations or
    seconds) is used, then `LR_DECAY` × that rate until it levels off again — a constant
    step size leaves the parameters jittering at a loss ~0.5 % above the optimum on
    minibatch gradients.  The caller owns the loop and the optimiser; `update` says what
    to do after each step."""

    def __init__(self, window: int, tolerance: float, max_iterations: int, max_seconds: float | None,
                 noise_aware: bool = False) -> None:
        self.window, self.tolerance, self.noise_aware = int(window), float(tolerance), bool(noise_aware)
        self.max_iterations = int(max_iterations)
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.stop = LossPlateau(self.window, self.tolerance, self.noise_aware)
        self.stage, self.start, self.decay_at, self.converged_at = 0, 0, -1, -1
        self.reasons: list[str] = []

    def update(self, losses: np.ndarray, n: int, it: int, elapsed: float) -> str | None:
        """After `n` losses (``losses[:n]``) at the caller's iteration number `it` and
        `elapsed` seconds of optimisation: "decay" (cut the learning rate now), "converged",
        "max_seconds" (stop), or None (go on)."""
        levelled = False
        try:
            self.stop(None, losses[self.start:n], it - self.start)
        except StopIteration:
            levelled = True
            self.reasons.append(self.stop.reason)
        late = n >= 2 * self.max_iterations / 3 or (self.max_seconds is not None and elapsed > 2 * self.max_seconds / 3)
        action = None
        if self.stage == 0 and (levelled or late):
            if not levelled:
                self.reasons.append("2/3 of the budget used")
            self.stage, self.start, self.decay_at = 1, n, n
            self.stop = LossPlateau(self.window, self.tolerance, self.noise_aware)
            action = "decay"
        elif self.stage == 1 and levelled:
            self.converged_at = it
            return "converged"
        if self.max_seconds is not None and elapsed > self.max_seconds:
            return "max_seconds"
        return action


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
