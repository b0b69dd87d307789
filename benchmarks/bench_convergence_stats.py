"""R-hat, bulk/tail ESS and MCSE: the package's vectorised estimators against arviz_stats (issue 20 §2).

    python -m benchmarks.bench_convergence_stats [--quick]   # from the repository root
    python -m benchmarks --cases convergence_stats          # timed by the runner

Both compute the same four statistics on the same (chain, draw, K) array:
`bayes_lse.diagnostics.estimators.convergence_stats` (numpy, vectorised over K) and
`arviz_stats.base.array_stats` (`rhat(method="rank")`, `ess(method="bulk")`,
`ess(method="tail", prob=(0.05, 0.95))`, `mcse(method="mean")`), which accepts leading
axes but loops over them in Python (`make_ufunc`: one call per quantity).  Each side is
timed best of `--repeats` on the same array; the values must agree (largest relative
difference printed).  Full size: 5,000 quantities × 4 chains × 1,000 draws (a
1,000-student fit's identified quantities are of that order); `--quick`: 500 quantities.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.runner import emit_result


def _cohort(k: int, seed: int = 0) -> np.ndarray:
    """(4, 1000, k) draws: iid normals, AR(1) chains of growing correlation, a shifted chain, ties."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 1000, k))
    rho = np.linspace(0.0, 0.95, k)
    for t in range(1, x.shape[1]):
        x[:, t] += rho * x[:, t - 1]
    x[1, :, ::7] += 1.0  # some quantities with a chain off
    x[:, :, 3::11] = np.round(x[:, :, 3::11])  # some with ties
    return x


def _arviz(x: np.ndarray) -> dict[str, np.ndarray]:
    from arviz_stats.base import array_stats

    kw = {"chain_axis": 0, "draw_axis": 1}
    return {
        "rhat": array_stats.rhat(x, method="rank", **kw),
        "ess_bulk": array_stats.ess(x, method="bulk", **kw),
        "ess_tail": array_stats.ess(x, method="tail", prob=(0.05, 0.95), **kw),
        "mcse_mean": array_stats.mcse(x, method="mean", **kw),
    }


def _best(fn, x: np.ndarray, repeats: int) -> tuple[float, dict[str, np.ndarray]]:
    best, out = np.inf, {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 quantities instead of 5,000")
    ap.add_argument("--quantities", type=int, default=None, help="override the number of quantities K")
    ap.add_argument("--repeats", type=int, default=None, help="timings per side, best kept (default 3, quick 1)")
    args = ap.parse_args(argv)
    from bayes_lse.diagnostics.estimators import convergence_stats

    k = args.quantities or (500 if args.quick else 5000)
    repeats = args.repeats or (1 if args.quick else 3)
    x = _cohort(k)
    print(f"{k} quantities × {x.shape[0]} chains × {x.shape[1]} draws; best of {repeats}")
    t_pkg, mine = _best(convergence_stats, x, repeats)
    t_az, ref = _best(_arviz, x, repeats)
    worst = 0.0
    for name in ref:
        a, b = np.asarray(mine[name]), np.asarray(ref[name])
        rel = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
        same_nan = bool(np.array_equal(np.isnan(a), np.isnan(b)))
        worst = max(worst, rel)
        print(f"  {name:10s} max relative difference {rel:.2e}; NaN in the same places: {same_nan}")
    ratio = t_az / t_pkg
    print(f"bayes_lse convergence_stats (4 statistics): {t_pkg:8.2f} s")
    print(f"arviz_stats.base.array_stats (4 statistics): {t_az:8.2f} s   ({ratio:.1f}× the package's time)")
    emit_result(
        "convergence_stats",
        quality={"max_relative_difference": worst},
        figures={"quantities": k, "package_seconds": t_pkg, "arviz_stats_seconds": t_az, "arviz_over_package": ratio},
        targets={"arviz_over_package": "keep the copy only if arviz_stats is more than ~2x slower"},
        notes="R-hat (rank), bulk ESS, tail ESS (5%/95%), MCSE of the mean on (4, 1000, K)",
    )


if __name__ == "__main__":
    main()
