"""ADVI at scale: minibatch ADVI (batches of students) on ~2.5 million simulated
interactions, beside full-batch ADVI (PyMC's pm.fit) on a 10% student subsample.

    python -m benchmarks.bench_advi_minibatch            # 51,000 students: 2,499,000 interactions
    python -m benchmarks.bench_advi_minibatch --quick    # 2,000 students: 48,000 interactions
    python -m benchmarks.bench_advi_minibatch --amortised   # the same with amortised ADVI (extra jax)

With ``--amortised`` the fit of everyone is `fit(method="advi", amortised=True)` (students
through the jointly trained encoder, batches of 256 unless --batch-size; its plateau rule,
no time budget unless --max-seconds) instead of minibatch ADVI.

Interactions = every row of the log, answers and lessons: a student answers 4
assessments at each of 10 steps and takes a lesson between steps (40 + 9 = 49 rows).
Held out: the last-step answers of 20% of the students (their lesson into that
step stays in training, so their last state is fitted from the transition prior).
Minibatch ADVI fits every student; full-batch ADVI fits a random 10% of the students.
AUCs: the minibatch fit on all held-out rows; both fits on the held-out rows of the
subsample's students; and the true pass probabilities on the same rows.

Targets (requirement): the minibatch fit of 2.5M interactions in ≤ 10 min and ≤ 8 GB.
`minibatch_fit_seconds` is the whole `fit()` call (index arrays, compilation, the
optimisation, 100 posterior draws, the DataTree); `peak_rss_after_minibatch_gb` is the
process's peak up to then (simulation and data reading included); the runner's
whole-process figures also include the subsample fit.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

T_START = time.perf_counter()

import bayes_lse as bl  # noqa: E402
from bayes_lse.evaluate.metrics import auc, log_loss  # noqa: E402


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def holdout(table: pd.DataFrame, frac: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last-step answers of `frac` of the students."""
    rng = np.random.default_rng(seed)
    students = table["student_id"].unique()
    held = rng.choice(students, int(round(frac * len(students))), replace=False)
    mask = (
        table["student_id"].isin(held)
        & (table["timestep"] == table["timestep"].max())
        & (table["module_type"] == "assessment")
    ).to_numpy()
    return table[~mask].reset_index(drop=True), table[mask].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 students, 5 steps (48,000 interactions)")
    ap.add_argument("--students", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="students per batch (default: ~2%% of the students)")
    ap.add_argument("--max-seconds", type=float, default=None, help="optimisation budget of the minibatch fit")
    ap.add_argument("--full-max-seconds", type=float, default=None, help="optimisation budget of the full-batch fit")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--amortised", action="store_true", help="amortised ADVI instead of minibatch ADVI")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # a fit stopped by its budget says so; we print it

    if args.quick:
        U, steps, A, L = args.students or 2000, 5, 30, 10
        batch = args.batch_size or 100
        max_s, full_max_s = args.max_seconds or 10.0, args.full_max_seconds or 10.0
    else:
        U, steps, A, L = args.students or 51_000, 10, 50, 20
        batch = args.batch_size or 1000
        max_s, full_max_s = args.max_seconds or 400.0, args.full_max_seconds or 600.0
    answers = 4

    t0 = time.perf_counter()
    cohort = bl.simulate(n_students=U, n_steps=steps, n_assessments=A, n_lessons=L, answers_per_step=answers, seed=args.seed)
    table = cohort.table
    del cohort
    train, test = holdout(table, 0.2, args.seed)
    n_rows, n_answers = len(table), int((table["module_type"] == "assessment").sum())
    del table
    t_sim = time.perf_counter() - t0
    print(
        f"cohort: {U:,} students × {steps} steps, {answers} answers/step, {A} assessments, {L} lessons, d=2: "
        f"{n_rows:,} interactions ({n_answers:,} answers + {n_rows - n_answers:,} lessons); "
        f"held out {len(test):,} last-step answers of {test['student_id'].nunique():,} students "
        f"({t_sim:.1f} s, peak {peak_gb():.2f} GB)",
        flush=True,
    )

    t0 = time.perf_counter()
    log = bl.read_interactions(train)
    t_read = time.perf_counter() - t0
    print(f"read_interactions: {t_read:.1f} s ({log.n_states:,} states)", flush=True)

    # ------------------------------------------------------------ minibatch ADVI, everyone
    spec = bl.LatentSkillEmbedding(n_skills=2)
    t0 = time.perf_counter()
    if args.amortised:
        batch = args.batch_size or 256
        mini = spec.fit(log, method="advi", amortised=True, batch_size=batch, max_seconds=args.max_seconds,
                        draws=args.draws, seed=args.seed, progressbar=False)
    else:
        mini = spec.fit(
            log, method="advi", batch_size=batch, max_seconds=max_s, max_iterations=10**7, draws=args.draws,
            seed=args.seed, progressbar=False,
        )
    t_mini = time.perf_counter() - t0
    peak_mini = peak_gb()
    opt = mini.idata["optimization"].attrs
    loss = mini.idata["optimization"]["loss"].values
    nb = int(opt["batches_per_epoch"])
    post_gb = sum(v.nbytes for v in mini.idata["posterior"].to_dataset().data_vars.values()) / 1e9
    print(
        f"{'amortised' if args.amortised else 'minibatch'} ADVI (batch {batch} students, {nb} batches/epoch): fit {t_mini:.1f} s "
        f"(optimisation {opt['optimisation_seconds']:.1f} s), {opt['iterations']:,} iterations = {opt['epochs']:.1f} epochs, "
        f"learning rate cut at iteration {opt['learning_rate_decay_at']}, stopped by {opt['stopped_by']}; "
        f"last-epoch mean loss {loss[-nb:].mean():.6g}; posterior {post_gb:.2f} GB ({args.draws} draws); "
        f"peak so far {peak_mini:.2f} GB",
        flush=True,
    )
    t0 = time.perf_counter()
    pred_mini = mini.predict(test)
    t_pred = time.perf_counter() - t0
    y_all = pred_mini["outcome"].to_numpy()
    auc_mini_all = auc(y_all, pred_mini["p_mean"].to_numpy())
    auc_true_all = auc(y_all, pred_mini["p_true"].to_numpy())
    print(
        f"  held-out AUC on all {len(y_all):,} rows: minibatch {auc_mini_all:.4f}, true p {auc_true_all:.4f} "
        f"(predict {t_pred:.1f} s)",
        flush=True,
    )
    mini_by_row = pred_mini.set_index(["student_id", "module_id", "timestep"])["p_mean"]
    del mini, pred_mini

    # ------------------------------------------------------------ full-batch ADVI, 10% of students
    rng = np.random.default_rng(args.seed + 1)
    students = train["student_id"].unique()
    sub = set(rng.choice(students, int(round(0.1 * len(students))), replace=False))
    train_sub = train[train["student_id"].isin(sub)].reset_index(drop=True)
    test_sub = test[test["student_id"].isin(sub)].reset_index(drop=True)
    t0 = time.perf_counter()
    full = spec.fit(train_sub, method="advi", max_seconds=full_max_s, draws=args.draws, seed=args.seed, progressbar=False)
    t_full = time.perf_counter() - t0
    fopt = full.idata["optimization"].attrs
    floss = full.idata["optimization"]["loss"].values
    pred_full = full.predict(test_sub)
    y_sub = pred_full["outcome"].to_numpy()
    p_full = pred_full["p_mean"].to_numpy()
    p_mini_sub = mini_by_row.loc[list(zip(pred_full["student_id"], pred_full["module_id"], pred_full["timestep"], strict=True))].to_numpy()
    auc_full_sub, auc_mini_sub = auc(y_sub, p_full), auc(y_sub, p_mini_sub)
    auc_true_sub = auc(y_sub, pred_full["p_true"].to_numpy())
    print(
        f"full-batch ADVI on {len(sub):,} students ({len(train_sub):,} interactions): fit {t_full:.1f} s, "
        f"{fopt['iterations']:,} iterations, converged {bool(fopt['converged'])}, last-500 mean loss {floss[-500:].mean():.6g}",
        flush=True,
    )
    print(
        f"  held-out AUC on the subsample's {len(y_sub):,} rows: full-batch {auc_full_sub:.4f}, "
        f"minibatch {auc_mini_sub:.4f}, true p {auc_true_sub:.4f}; log-loss full-batch {log_loss(y_sub, p_full):.4f}, "
        f"minibatch {log_loss(y_sub, p_mini_sub):.4f}",
        flush=True,
    )
    total = time.perf_counter() - T_START
    print(f"in-process total {total:.1f} s, peak {peak_gb():.2f} GB", flush=True)

    from benchmarks.runner import emit_result

    emit_result(
        "advi_minibatch",
        amortised=bool(args.amortised),
        quality={
            "auc_minibatch_all_heldout": round(auc_mini_all, 4),
            "auc_true_all_heldout": round(auc_true_all, 4),
            "auc_minibatch_subsample_heldout": round(auc_mini_sub, 4),
            "auc_fullbatch_subsample_heldout": round(auc_full_sub, 4),
            "auc_true_subsample_heldout": round(auc_true_sub, 4),
            "logloss_minibatch_subsample_heldout": round(log_loss(y_sub, p_mini_sub), 4),
            "logloss_fullbatch_subsample_heldout": round(log_loss(y_sub, p_full), 4),
            "n_heldout_all": len(y_all),
            "n_heldout_subsample": len(y_sub),
        },
        figures={
            "interactions": n_rows,
            "train_interactions": len(train),
            "students": U,
            "batch_size": batch,
            "minibatch_fit_seconds": round(t_mini, 1),
            "minibatch_optimisation_seconds": round(float(opt["optimisation_seconds"]), 1),
            "minibatch_iterations": int(opt["iterations"]),
            "minibatch_epochs": round(float(opt["epochs"]), 1),
            "minibatch_converged": int(opt["converged"]),
            "posterior_gb": round(post_gb, 2),
            "peak_rss_after_minibatch_gb": round(peak_mini, 2),
            "subsample_interactions": len(train_sub),
            "fullbatch_fit_seconds": round(t_full, 1),
            "fullbatch_iterations": int(fopt["iterations"]),
            "fullbatch_converged": int(fopt["converged"]),
            "peak_rss_gb": round(peak_gb(), 2),
            "in_process_seconds": round(total, 1),
        },
        targets={
            "minibatch_fit_seconds": "<= 600 (2.5M interactions)",
            "peak_rss_after_minibatch_gb": "<= 8",
            "auc_minibatch_subsample_heldout": "about auc_fullbatch_subsample_heldout",
        },
        notes=(
            f"{'quick: ' if args.quick else ''}{n_rows:,} interactions (answers + lessons), minibatch of {batch} students, "
            f"{args.draws} draws, budgets {max_s:g} s / {full_max_s:g} s of optimisation; full-batch = pm.fit on 10% of students"
        ),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
