"""Prediction metrics used by the demo, tests and evaluation (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney form, ties counted half)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata  # on first use: scipy.stats is ~20 MB resident (MAP memory budget)

    r = rankdata(p)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-12) -> float:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def accuracy(y: ArrayLike, p: ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows where the prediction p >= `threshold` agrees with the outcome."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    return float(np.mean((p >= threshold) == y))


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: sum over `bins` equal-width probability bins of
    (share of rows in the bin) · |mean outcome − mean prediction| in the bin."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    b = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    gap = np.abs(np.bincount(b, y, minlength=bins) - np.bincount(b, p, minlength=bins))
    return float(gap.sum() / len(y))
