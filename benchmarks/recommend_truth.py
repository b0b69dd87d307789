"""The recommender against the truth (issue 4): prints regret, band coverage and the
blog's Figure 4 on simulated cohorts whose true parameters are known; asserts
nothing. The helpers live in `bayes_lse.evaluate.recommend_truth` (the slow tests
use the same ones).

    python -m benchmarks.recommend_truth            # from the repository root
    python -m benchmarks.recommend_truth --quick    # skip the no-prerequisite cohort
"""

from __future__ import annotations

import argparse
import time
from typing import Any


import pandas as pd

from bayes_lse.evaluate.recommend_truth import COHORT, NUTS, coverage, evaluate, figure4, fit_cohort, regret


def _fmt(d: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in d.items())


def _report_cohort(label: str, cohort: Any, fitted: Any, seed: int) -> None:
    for n, averaged, with_noise, n_noise in [(2, True, True, 2000), (3, True, False, 500)]:
        t0 = time.perf_counter()
        df = evaluate(cohort, fitted, n, averaged=averaged, with_noise=with_noise, n_noise=n_noise, seed=seed)
        dt = time.perf_counter() - t0
        print(f"\n[{label}] max_length {n}: {len(df)} students, hard goals (1 or 2), "
              f"candidates = all {len(fitted.lessons)} lessons  ({dt:.1f} s incl. truth MC n={n_noise})")
        print("  regret, default rec, truth=expected :", _fmt(regret(df, "expected")))
        print("  regret, default rec, truth=averaged :", _fmt(regret(df, "averaged")))
        if with_noise:
            print("  regret, noise rec,   truth=averaged :", _fmt(regret(df, "averaged", "noise_")))
        print(f"  recommended = exactly the true best (expected): {df['expected_is_best'].mean():.3f}")
        print("  90% band, no lesson (current) vs truth   :", _fmt(coverage(df, "expected_none", "current_")))
        print("  90% band, default rec vs expected truth :", _fmt(coverage(df, "expected_rec")))
        print("  90% band, default rec vs averaged truth :", _fmt(coverage(df, "averaged_rec")))
        if with_noise:
            print("  90% band, noise rec vs realised truth   :", _fmt(coverage(df, "noise_realised_rec", "noise_")))
            print("  90% band, noise rec vs averaged truth   :", _fmt(coverage(df, "noise_averaged_rec", "noise_")))
        for g in (1, 2):
            sub = df[df.n_goals == g]
            print(f"    {g} goal(s): n={len(sub)}  mean ratio (expected) {regret(sub)['mean_ratio']:.3f}  "
                  f"coverage (expected) {coverage(sub, 'expected_rec')['coverage']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the cohort with prerequisites and Figure 4")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    import bayes_lse as bl
    from bayes_lse.data.examples import load_example

    t0 = time.perf_counter()
    fit = bl.LatentSkillEmbedding().fit(load_example("prerequisites"), **NUTS, seed=4, progressbar=False)
    print(f"Figure 4 (load_example('prerequisites'), NUTS 2x300, {time.perf_counter() - t0:.1f} s): "
          "P(pass A3) at step 0, before and after L1")
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(figure4(fit).to_string())

    cohorts = [("prerequisites", True)] + ([] if args.quick else [("no prerequisites", False)])
    for label, prereq in cohorts:
        cohort, fitted, dt = fit_cohort(args.seed + (0 if prereq else 1), prereq)
        print(f"\n=== cohort with {label}: simulate({COHORT}), NUTS 2x300 fit {dt:.1f} s; "
              f"true σ_L {cohort.truth['learning_noise']:.3f}")
        _report_cohort(label, cohort, fitted, args.seed)


if __name__ == "__main__":
    main()
