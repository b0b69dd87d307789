"""Amortised ADVI against full-batch ADVI on a cohort that full-batch ADVI can fit (issue 16,
"held-out AUC within 0.01 of full-batch ADVI on a subsample that full-batch can fit").

A cohort simulated from the model's priors (`bayes_lse.simulate`: prerequisites, σ_L = √0.5,
biases); the last 10 % of every student's answers are held out (chronologically; at least
one), the rest is the training log.  Three fits of `LatentSkillEmbedding(history=False)`,
each with the method's *defaults*:

* ``advi``: full-batch mean-field ADVI (PyMC, the whole model every step);
* ``advi-minibatch``: minibatch ADVI (``batch_size=256``; a mean and scale per student);
* ``advi-amortised``: ``amortised=True`` (students through a jointly trained encoder, the
  globals by SVI; `inference.amortised_fit`).

Every held-out answer is predicted by `FittedLSE.predict` (posterior mean of the pass
probability, the state moved through the held-out steps) and scored: AUC, log-loss, and
the paired difference amortised − full-batch with its DeLong p and a bootstrap SE over
students (`evaluate.protocols.paired_comparison`).  The true pass probability's AUC is
the ceiling.

    python -m benchmarks.bench_amortised_vs_advi            # 1,000 students x 10 steps
    python -m benchmarks.bench_amortised_vs_advi --quick    # 150 students x 6 steps
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd


def holdout_last(table: pd.DataFrame, fraction: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the last `fraction` of each student's answers (at least one) are the test
    rows; their lessons stay in training only if taken before the first held-out answer."""
    t = table.reset_index(drop=True)
    ans = t[t["module_type"] == "assessment"]
    n = ans.groupby("student_id")["timestep"].transform("size")
    rank = ans.groupby("student_id").cumcount(ascending=False)  # 0 = the last answer
    held = ans.index[rank < np.maximum(1, np.floor(fraction * n)).astype(int)]
    first_held = t.loc[held].groupby("student_id")["timestep"].min()
    cut = t["student_id"].map(first_held)
    later = t["timestep"] >= cut
    test = t.loc[held]
    train = t[~later.fillna(False) & ~t.index.isin(held)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(n_students: int, n_steps: int, seed: int) -> dict:
    import bayes_lse as bl
    from bayes_lse.evaluate.metrics import auc
    from bayes_lse.evaluate.protocols import paired_comparison

    c = bl.simulate(n_students=n_students, n_steps=n_steps, n_assessments=30, n_lessons=10, answers_per_step=3,
                    seed=seed)
    train, test = holdout_last(c.table)
    spec = bl.LatentSkillEmbedding(history=False)
    fits = {"advi": {}, "advi-minibatch": {"batch_size": min(256, n_students)}, "advi-amortised": {"amortised": True}}
    y = test["outcome"].to_numpy()
    out: dict = {"students": n_students, "train_answers": int((train["module_type"] == "assessment").sum()),
                 "test_answers": len(test), "auc_true": float(auc(y, test["p_true"]))}
    preds = {}
    for name, opts in fits.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            f = spec.fit(train, method="advi", seed=seed, progressbar=False, **opts)
        secs = time.perf_counter() - t0
        p = f.predict(test)["p_mean"].to_numpy()
        preds[name] = p
        opt = f.idata["optimization"].attrs if "optimization" in f.idata else {}
        ll = -np.mean(y * np.log(np.clip(p, 1e-12, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-12, 1)))
        out[name] = {"fit_seconds": round(secs, 1), "auc": round(float(auc(y, p)), 4), "log_loss": round(float(ll), 4),
                     "iterations": int(opt.get("iterations", -1)), "stopped_by": str(opt.get("stopped_by", "")),
                     "converged": int(opt.get("converged", -1))}
        print(f"  {name:15s} AUC {out[name]['auc']:.4f}  log-loss {out[name]['log_loss']:.4f}  "
              f"fit {secs:7.1f} s  iterations {out[name]['iterations']}  stopped by {out[name]['stopped_by']}", flush=True)
    cmp = paired_comparison(y, preds["advi-amortised"], preds["advi"], groups=test["student_id"].to_numpy(), seed=seed)
    out["amortised_minus_full"] = {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in cmp.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    from benchmarks.runner import emit_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 2; quick 1)")
    ap.add_argument("--first-seed", type=int, default=0, help="start the seeds here (to add a seed to a run)")
    a = ap.parse_args(argv)
    n, T = (150, 6) if a.quick else (1000, 10)
    seeds = range(a.first_seed, a.first_seed + (a.seeds or (1 if a.quick else 2)))
    rows = []
    for s in seeds:
        print(f"seed {s}: {n} students x {T} steps", flush=True)
        rows.append(run(n, T, s))
    print("\n| seed | train answers | test answers | AUC true | AUC full-batch | AUC minibatch | AUC amortised "
          "| amortised - full (SE, DeLong p) | log-loss full / amortised | fit s full / minibatch / amortised |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s, r in zip(seeds, rows):
        d = r["amortised_minus_full"]
        print(f"| {s} | {r['train_answers']} | {r['test_answers']} | {r['auc_true']:.4f} | {r['advi']['auc']:.4f} | "
              f"{r['advi-minibatch']['auc']:.4f} | {r['advi-amortised']['auc']:.4f} | "
              f"{d.get('auc_diff', float('nan')):+.4f} ({d.get('auc_diff_se', float('nan')):.4f}, p {d.get('auc_diff_delong_p', float('nan')):.2f}) | "
              f"{r['advi']['log_loss']:.4f} / {r['advi-amortised']['log_loss']:.4f} | "
              f"{r['advi']['fit_seconds']:.0f} / {r['advi-minibatch']['fit_seconds']:.0f} / {r['advi-amortised']['fit_seconds']:.0f} |")
    diffs = [r["amortised_minus_full"].get("auc_diff", np.nan) for r in rows]
    emit_result("amortised_vs_advi",
                quality={"auc_diff_amortised_minus_full_mean": float(np.mean(diffs)),
                         "auc_full": float(np.mean([r["advi"]["auc"] for r in rows])),
                         "auc_amortised": float(np.mean([r["advi-amortised"]["auc"] for r in rows]))},
                figures={"students": n, "seeds": len(rows)},
                targets={"auc": "amortised within 0.01 of full-batch ADVI (issue 16)"},
                notes="held-out last 10 % of answers per student; default settings of each fit", runs=rows)


if __name__ == "__main__":
    main()
