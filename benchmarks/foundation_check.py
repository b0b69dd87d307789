"""Issue 2's done-criterion, as a script that prints figures (not a timed test).

    python -m benchmarks.foundation_check [--seed 1] [--students 300] [--methods map,nuts,advi]

Simulates a cohort with the simulator's defaults, holds out the last-timestep
assessments of 20% of the students, fits on the rest, and compares the held-out
AUC with the AUC of the true pass probabilities on the same rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bayes_lse as bl
from bayes_lse.evaluate.metrics import auc


def split(table, frac: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    students = table["student_id"].unique()
    held = set(rng.choice(students, size=int(len(students) * frac), replace=False))
    last = table.groupby("student_id")["timestep"].transform("max")
    mask = table["student_id"].isin(held) & (table["timestep"] == last) & (table["module_type"] == "assessment")
    return table[~mask], table[mask]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--students", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--methods", default="map,nuts,advi")
    args = ap.parse_args()
    cohort = bl.simulate(n_students=args.students, n_steps=args.steps, seed=args.seed)
    train, test = split(cohort.table)
    truth_gain = np.array([v["gain"] for v in cohort.truth["lessons"].values()])
    print(f"cohort: {args.students} students x {args.steps} steps, seed {args.seed}; held-out rows: {len(test)}")
    print(f"true mean |gain| {np.linalg.norm(truth_gain, axis=-1).mean():.2f}")
    print(f"{'method':6} {'AUC':>6} {'AUC(p_true)':>11} {'gap':>6} {'90% cover':>9} {'mean|l|':>7} {'seconds':>7}")
    for method in args.methods.split(","):
        kw = {"seed": args.seed}
        if method == "nuts":
            kw.update(chains=2, draws=500, tune=500)
        t0 = time.perf_counter()
        fitted = bl.LatentSkillEmbedding().fit(train, method=method, progressbar=False, **kw)
        secs = time.perf_counter() - t0
        pred = fitted.predict(test)
        a = auc(pred["outcome"], pred["p_mean"])
        a_true = auc(pred["outcome"], pred["p_true"])
        cover = np.mean((pred["p_true"] >= pred["p_low"]) & (pred["p_true"] <= pred["p_high"]))
        gain = np.linalg.norm(fitted.draws("gain").mean(0), axis=-1).mean()
        cov_txt = f"{cover:9.0%}" if method != "map" else f"{'-':>9}"
        print(f"{method:6} {a:6.3f} {a_true:11.3f} {a - a_true:+6.3f} {cov_txt} {gain:7.2f} {secs:7.0f}", flush=True)


if __name__ == "__main__":
    main()
