"""MAP on the ASSISTments 2009 problem-level train file, the original LSE treatment.

    python -m benchmarks.bench_map_assistments [--quick] [--maxiter 200] [--starts 1]

Every answer is an assessment and also a lesson (`--items-as-lessons`), so the
3,330 students have 268k states and the fit has ~667k parameters.  The last answer
of 20% of the students (seeded) is held out together with everything after it;
the model is fit by MAP on the rest and predicts the held-out answers from each
student's last training state pushed through their last lesson.

Targets (issue 7): whole process ≤ 21 s and ≤ 400 MB, held-out AUC ≥ 0.80.
For scale, the original Python 2 LSE code on this machine class: ~106 s, 3.9 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

T_START = time.perf_counter()

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assistments2009" / "ckyeungac_problem_id_train.csv"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_last_answer(df, fraction: float = 0.2, seed: int = 0):
    """Hold out the last answer of `fraction` of the students and everything from it on."""
    rng = np.random.default_rng(seed)
    students = df["student_id"].unique()
    held = rng.choice(students, size=int(len(students) * fraction), replace=False)
    is_a = (df["module_type"] == "assessment").to_numpy()
    last_step = df[is_a].groupby("student_id", sort=False)["timestep"].max()
    cut = df["student_id"].map(last_step[last_step.index.isin(held)])
    drop = (cut.notna() & (df["timestep"] >= cut)).to_numpy()
    train = df[~drop].reset_index(drop=True)
    test = df[drop & is_a]
    # scoreable: the student and the item are in the training data
    known_items = set(train.loc[train["module_type"] == "assessment", "module_id"])
    test = test[test["student_id"].isin(set(train["student_id"])) & test["module_id"].isin(known_items)]
    return train, test.reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="first 300 students only")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--maxiter", type=int, default=200, help="L-BFGS-B iterations (default 200)")
    ap.add_argument("--maxcor", default="auto", help="L-BFGS corrections kept (default auto: 5 here)")
    ap.add_argument("--starts", type=int, default=1)
    ap.add_argument("--skills", type=int, default=2)
    ap.add_argument("--kernel-backend", choices=("numpy", "numba"), default="numpy",
                    help="objective backend (numba: ~2x faster per evaluation, ~105 MB more resident)")
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"RESULT {json.dumps({'case': 'map_assistments', 'skipped': f'data not found: {args.data}'})}")
        return

    import bayes_lse as bl
    from bayes_lse.data.readers import read_assistments_dkt

    t_import = time.perf_counter() - T_START
    t0 = time.perf_counter()
    df = read_assistments_dkt(args.data, items_as_lessons=True)
    if args.quick:
        keep = df["student_id"].unique()[:300]
        df = df[df["student_id"].isin(keep)].reset_index(drop=True)
    train, test = split_last_answer(df)
    log = bl.read_interactions(train, name=str(args.data))
    t_read = time.perf_counter() - t0
    n_answers = int((train["module_type"] == "assessment").sum())
    print(f"{log.n_students} students, {n_answers} training answers, {len(test)} held-out answers "
          f"(read + split {t_read:.1f} s, peak {peak_mb():.0f} MB)", flush=True)
    del df, train

    t0 = time.perf_counter()
    spec = bl.LatentSkillEmbedding(n_skills=args.skills)
    fit = spec.fit(log, method="map", starts=args.starts, maxiter=args.maxiter, maxcor=args.maxcor if args.maxcor == "auto" else int(args.maxcor), seed=0,
                   kernel_backend=args.kernel_backend,
                   progressbar=False)
    t_fit = time.perf_counter() - t0
    del log  # the fit keeps its own copy of the training table
    opt = fit.idata["optimization"]
    best = int(opt.attrs["best_start"])
    print(f"MAP ({opt.attrs.get('engine', 'pytensor')}): {t_fit:.1f} s, {int(opt['n_iterations'][best])} iterations, "
          f"-log p {float(opt['objective'][best]):.1f}, |grad| {float(opt['grad_norm'][best]):.3g} "
          f"(peak {peak_mb():.0f} MB)", flush=True)

    # the scoring code (scipy.stats, ~20 MB resident) is the benchmark's, not the fit's:
    # imported after the fit so that it does not sit on top of the fit's peak
    from bayes_lse.evaluate.metrics import auc, log_loss

    t0 = time.perf_counter()
    pred = fit.predict(test)
    t_pred = time.perf_counter() - t0
    y = test["outcome"].to_numpy()
    p = pred["p_mean"].to_numpy()
    a, ll = auc(y, p), log_loss(y, p)
    total = time.perf_counter() - T_START
    print(f"held-out AUC {a:.3f}, log-loss {ll:.3f} on {len(y)} answers; predict {t_pred:.1f} s; "
          f"in-process total {total:.1f} s, peak {peak_mb():.0f} MB")
    result = {
        "case": "map_assistments",
        "quality": {"heldout_auc": round(a, 4), "heldout_log_loss": round(ll, 4), "n_heldout": int(len(y))},
        "figures": {
            "import_seconds": round(t_import, 2),
            "read_split_seconds": round(t_read, 2),
            "fit_seconds": round(t_fit, 2),
            "predict_seconds": round(t_pred, 2),
            "iterations": int(opt["n_iterations"][best]),
            "grad_norm": float(opt["grad_norm"][best]),
            "n_parameters": int(sum(v.size for v in fit.posterior.data_vars.values())),
            "in_process_peak_mb": round(peak_mb(), 1),
        },
        "targets": {"wall": "<= 21 s whole process", "memory": "<= 400 MB peak", "heldout_auc": ">= 0.80"},
        "notes": f"{'quick: 300 students; ' if args.quick else ''}MAP {args.starts} start(s), maxiter {args.maxiter}, "
        f"maxcor {args.maxcor}, kernel {args.kernel_backend}, d={args.skills}, items as lessons",
    }
    sys.stdout.flush()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
