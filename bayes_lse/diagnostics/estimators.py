"""Convergence estimators on plain arrays: rank-normalised split R-hat, bulk/tail ESS, MCSE.

numpy only (no xarray): `convergence.convergence_table` is the labelled wrapper.

Why a copy of ArviZ's estimators instead of `arviz_stats` (issue 20 §2): arviz-stats
1.3's `arviz_stats.base.array_stats` takes leading axes but loops over them in Python
(`make_ufunc`: one call per quantity), and on 5,000 quantities × 4 chains × 1,000
draws it took 2.6× as long as this module for the same four statistics (34.6 s
against 13.4 s, best of 3, on the shared 2-core machine at load ~2; 2.5× at 500
quantities), with values equal to 4e-14 relative.  Measured by
``python -m benchmarks.bench_convergence_stats``; `tests/diagnostics/test_estimators.py`
checks the values against `arviz_stats` on every run, so the copy cannot drift.
Replace it when the library is within ~2× (re-run the benchmark after upgrading).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len
from scipy.special import ndtri

__all__ = ["convergence_stats"]


def _split_chains(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """scipy.stats.rankdata(a, 'average', axis=0), several times faster on wide arrays."""
    a = np.ascontiguousarray(a.T)  # sort along contiguous rows
    n = a.shape[1]
    order = np.argsort(a, axis=1)
    srt = np.take_along_axis(a, order, axis=1)
    pos = np.broadcast_to(np.arange(n, dtype=float), a.shape)
    differs = srt[:, 1:] != srt[:, :-1]
    edge = np.ones((a.shape[0], 1), dtype=bool)
    start = np.maximum.accumulate(np.where(np.hstack([edge, differs]), pos, 0.0), axis=1)
    end = np.minimum.accumulate(np.where(np.hstack([differs, edge]), pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(start)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks.T


def _z_scale(x: np.ndarray) -> np.ndarray:
    m, n, k = x.shape
    r = _average_ranks(x.reshape(m * n, k))
    return ndtri((r - 3 / 8) / (m * n - 2 * 3 / 8 + 1)).reshape(m, n, k)


def _rhat_basic(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    between = n * x.mean(axis=1).var(axis=0, ddof=1)
    within = x.var(axis=1, ddof=1).mean(axis=0)
    with np.errstate(all="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess_basic(x: np.ndarray) -> np.ndarray:
    """Geyer initial-monotone-sequence ESS of (chain, draw, K), vectorised over K."""
    m, n, k = x.shape
    x = x.astype(float)
    const = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    size = next_fast_len(2 * n)
    f = np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=size, axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=size, axis=1)[:, :n] / n  # (m, n, K)
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(all="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, K)
    rho[0] = 1.0
    i_max = max(int(np.ceil((n - 2) / 2)) - 1, 0)  # last pair Geyer's loop may reach
    pairs = rho[0 : 2 * i_max + 2 : 2] + rho[1 : 2 * i_max + 2 : 2]  # (i_max+1, K)
    nonpos = pairs <= 0
    first = np.where(nonpos.any(axis=0), nonpos.argmax(axis=0), i_max)
    last = np.minimum(first, i_max)  # index of the pair the loop stopped at
    cummin = np.minimum.accumulate(pairs, axis=0)  # initial monotone sequence
    body = np.where(np.arange(len(pairs))[:, None] < last[None, :], cummin, 0.0).sum(axis=0)
    cols = np.arange(k)
    r_last = rho[2 * last, cols]
    tail = np.where(last == 0, 1.0, np.where((pairs[last, cols] >= 0) | (r_last > 0), r_last, 0.0))
    tau = np.maximum(-1.0 + 2.0 * body + tail, 1.0 / np.log10(m * n))
    ess = m * n / tau
    ess[np.isnan(rho).any(axis=0)] = np.nan
    ess[const] = m * n
    return ess


def convergence_stats(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk/tail ESS and MCSE of the mean for (chain, draw, K).

    The same estimators as `arviz_stats.rhat/ess/mcse` (Vehtari et al. 2021), vectorised
    over K: ArviZ loops over scalars in Python, which made a 1,000-student fit take
    10 s here, and is 2.6× slower on 5,000 quantities (module docstring); tests
    check the values against ArviZ's.

    Parameters
    ----------
    arr : numpy.ndarray
        Draws, ``(chain, draw, K)``.

    Returns
    -------
    dict of numpy.ndarray
        ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, each ``(K,)``; NaN for a
        quantity with a non-finite draw, all NaN with fewer than 4 draws per chain, and
        ``rhat`` NaN with a single chain.
    """
    arr = np.asarray(arr, dtype=float)
    m, n, k = arr.shape
    out = {name: np.full(k, np.nan) for name in ("rhat", "ess_bulk", "ess_tail", "mcse_mean")}
    if n < 4:
        return out
    bad = ~np.isfinite(arr).all(axis=(0, 1))
    x = np.where(bad[None, None, :], 0.0, arr)
    split = _split_chains(x)
    z_split = _z_scale(split)  # shared by R-hat and bulk ESS (a rank transform of every quantity)
    if m >= 2:
        folded = np.abs(split - np.median(split.reshape(-1, k), axis=0))
        out["rhat"] = np.maximum(_rhat_basic(z_split), _rhat_basic(_z_scale(folded)))
    out["ess_bulk"] = _ess_basic(z_split)
    flat = x.reshape(m * n, k)
    q_lo, q_hi = np.quantile(flat, [0.05, 0.95], axis=0)
    out["ess_tail"] = np.minimum(_ess_basic(_split_chains((x <= q_lo).astype(float))),
                                 _ess_basic(_split_chains((x <= q_hi).astype(float))))
    with np.errstate(all="ignore"):
        out["mcse_mean"] = flat.std(axis=0, ddof=1) / np.sqrt(_ess_basic(split))
    for v in out.values():
        v[bad] = np.nan
    return out
