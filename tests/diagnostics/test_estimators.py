"""`diagnostics.estimators.convergence_stats` equals arviz_stats's R-hat, ESS and MCSE.

The package keeps a vectorised copy of ArviZ's estimators because arviz_stats was
2.5× slower on 5,000 quantities (benchmarks/bench_convergence_stats.py); this test is
what keeps the copy honest: the same array-interface calls the benchmark times
(`arviz_stats.base.array_stats`), to 1e-12 relative, edge cases included.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayes_lse.diagnostics.estimators import convergence_stats


def _arviz(x: np.ndarray) -> dict[str, np.ndarray]:
    from arviz_stats.base import array_stats

    kw = {"chain_axis": 0, "draw_axis": 1}
    return {
        "rhat": array_stats.rhat(x, method="rank", **kw),
        "ess_bulk": array_stats.ess(x, method="bulk", **kw),
        "ess_tail": array_stats.ess(x, method="tail", prob=(0.05, 0.95), **kw),
        "mcse_mean": array_stats.mcse(x, method="mean", **kw),
    }


def _draws() -> np.ndarray:
    rng = np.random.default_rng(20)
    x = rng.normal(size=(4, 200, 12))
    for t in range(1, x.shape[1]):
        x[:, t, 1] += 0.9 * x[:, t - 1, 1]  # strongly autocorrelated
        x[:, t, 2] -= 0.6 * x[:, t - 1, 2]  # anticorrelated
    x[:, :, 3] = np.cumsum(x[:, :, 3], axis=1)  # random walk
    x[2, :, 4] += 3.0  # one chain elsewhere
    x[:, :, 5] = np.round(x[:, :, 5] * 0.5)  # heavy ties
    x[:, :, 6] = 1.5  # constant
    x[1, 17, 7] = np.nan  # a non-finite draw
    x[:, :, 8] = np.exp(3 * x[:, :, 8])  # heavy right tail
    x[:, :, 9] = (x[:, :, 9] > 1.2).astype(float)  # binary, rare
    return x


@pytest.mark.parametrize("shape", [(4, 200), (1, 200), (2, 7), (4, 3)], ids=["4x200", "one-chain", "7-draws", "3-draws"])
def test_convergence_stats_equal_arviz_stats(shape):
    import warnings

    x = _draws()[: shape[0], : shape[1]]
    mine = convergence_stats(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # arviz on the NaN / constant columns
        ref = _arviz(x)
    for name, values in ref.items():
        np.testing.assert_allclose(mine[name], np.asarray(values, dtype=float), rtol=1e-12, atol=0,
                                   equal_nan=True, err_msg=f"{name} on {shape}")
