"""The skill dimension d chosen from the data: ``n_skills="auto"`` (the default).

Why a held-out check, and why this one (issue 15, docs/results.md "Choosing d"):
d = 1 predicted better than d = 2 on both real logs — MoFaCTS AUC 0.865 vs 0.860,
log-loss 0.443 vs 0.450; ASSISTments 0.828 / 0.470 vs 0.817 / 0.486 (5-fold CV, last
10 %) — while simulated cohorts are drawn with d = 2 and the report's skill-space pictures
want a plane.  A joint MAP's AIC/BIC could not tell the two apart (the mode's parameter
count grows with the students), so the choice is made the way it is judged: fit each
candidate on all but the last `HOLDOUT` of the answers of up to `STUDENTS` students
(seeded by the fit's seed), predict the held-out answers, keep the d with the lower mean
log-loss.  Measured on three such subsamples each (`python /work/exp`-style screen recorded
in docs/results.md): MoFaCTS d = 1 lower by 0.006–0.013 (± 0.003), ASSISTments by
0.11–0.18 (± 0.012) — the same d every time.

It runs for MAP fits whose held-out set has at least `MIN_HELDOUT` answers: with fewer
the candidates cannot be ranked, and NUTS/ADVI fits are too slow to repeat; those fits
use `core.config.DEFAULT_SKILLS` and say so.  (Until 2026-12-05 the rule was "above 20k
answers": the 26-user Riiid smoke set, 18k answers but 1.8k held out, got d = 2 and AUC
0.685 where d = 1 gives 0.765 — 1PL 0.824; docs/results.md "Tags".)  The two extra fits
see `STUDENTS` students at most, on the centred compiled kernel with one start (the
settings of a large log's full fit; `inference.defaults.resolve_map_settings`) and
`inference.defaults.CHECK_MAXITER` iterations, so the check costs about two short fits
of a 150-student log whatever the log's size (0.5 s on MoFaCTS).  At 150 students and 150 iterations MoFaCTS chose d = 1
on four seeds out of four (log-loss lower by 0.013 / 0.008 / 0.005 / 0.012, ± 0.0045).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.core.config import DEFAULT_SKILLS

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import ModelSpec

#: the candidate dimensions, smallest first (a tie keeps the smaller)
CANDIDATES = (1, 2)
#: held-out answers from which a MAP fit chooses d by the check (fewer: the default d)
MIN_HELDOUT = 1_000
#: students whose last answers are held out (their other rows train the candidates)
STUDENTS = 150
#: share of each chosen student's answers held out (at least one)
HOLDOUT = 0.1


def holdout_split(log: InteractionLog, n_students: int, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out answers) of `n_students` random students of `log`.

    A student's rows in time order (timestep, then the order read); its last `share` of
    answers (at least one) are held out with every row after the first of them, as in
    `bayes-lse evaluate --protocol last-fraction`.  Students left with no training row
    are dropped."""
    t = log.table
    cols = ["student_id", "module_id", "module_type", "outcome", "timestep"]
    rng = np.random.default_rng(seed)
    codes = np.arange(log.n_students)
    chosen = np.sort(rng.choice(codes, size=min(n_students, len(codes)), replace=False))
    sub = t.loc[np.isin(t["student"].to_numpy(), chosen), [*cols, "student"]]
    sub = sub.assign(_row=np.arange(len(sub))).sort_values(["student", "timestep", "_row"], kind="stable")
    is_a = sub["module_type"].to_numpy() == "assessment"
    stu = sub["student"].to_numpy()
    # answers from the end of each student's rows: 0 = its last answer
    n_a = pd.Series(is_a.astype(int)).groupby(stu).transform("sum").to_numpy()
    after = pd.Series(is_a[::-1].astype(int)).groupby(stu[::-1]).cumsum().to_numpy()[::-1] - is_a
    n_hold = np.maximum(1, np.floor(share * n_a)).astype(int)
    first_held = is_a & (after == n_hold - 1)
    held = pd.Series(first_held.astype(int)).groupby(stu).cumsum().to_numpy() > 0
    train = sub.loc[~held, cols]
    test = sub.loc[held & is_a, cols]
    test = test[test["student_id"].isin(set(train["student_id"]))]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def heldout_logloss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-answer log-loss of pass probabilities `p` for outcomes `y` (clipped at 1e-9)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    y = np.asarray(y, dtype=float)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def choose_skills(
    spec: ModelSpec,
    log: InteractionLog,
    method: str,
    fit: Callable[[ModelSpec, pd.DataFrame, Mapping[str, Any]], Any],
    options: Mapping[str, Any] | None = None,
) -> tuple[ModelSpec, str]:
    """`spec` with ``n_skills="auto"`` decided for `log`, and the reason (one line).

    `fit(spec, table, options)` fits a candidate and returns an object with
    ``predict(table)`` (a `FitResult`); `options` are the fit's settings, passed to each
    candidate's fit with the seed.  A spec whose d is already a number comes back as it is."""
    if spec.config["n_skills"] != "auto":
        return spec, ""
    from bayes_lse.inference.defaults import CHECK_MAXITER, resolve_map_settings

    if method != "map":
        return spec.with_skills(DEFAULT_SKILLS), (
            f"n_skills {DEFAULT_SKILLS}: the default d (the held-out choice of d runs for MAP fits only)")
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG, merge

    opts = {k: v for k, v in (options or {}).items() if k != "progressbar"}
    seed = int(opts.get("seed") or 0)
    t0 = time.perf_counter()
    train, test = holdout_split(log, STUDENTS, HOLDOUT, seed)
    if len(test) < MIN_HELDOUT:
        return spec.with_skills(DEFAULT_SKILLS), (
            f"n_skills {DEFAULT_SKILLS}: the default d ({len(test)} held-out answers < {MIN_HELDOUT}: too few to "
            "choose d)")
    # the settings of a large log's full fit (compiled centred kernel, one start): a ranking, cheap at any size
    resolved, _ = resolve_map_settings(merge(DEFAULT_FIT_CONFIG["map"], {**opts, "parametrization": "centered"},
                                             "map fit"), log)
    cand_opts = {**opts, **{k: resolved[k] for k in ("maxiter", "parametrization", "kernel_backend")},
                 "starts": 1, "seed": seed}
    if (options or {}).get("maxiter", "auto") == "auto":  # a ranking, not the final fit: a short budget
        cand_opts["maxiter"] = CHECK_MAXITER
    y = test["outcome"].to_numpy()
    losses: dict[int, np.ndarray] = {}
    for d in CANDIDATES:
        fitted = fit(spec.with_skills(d), train, cand_opts)
        losses[d] = heldout_logloss(fitted.predict(test)["p_mean"].to_numpy(), y)
    best = min(CANDIDATES, key=lambda d: float(losses[d].mean()))
    a, b = CANDIDATES
    diff = losses[a] - losses[b]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    scores = ", ".join(f"d = {d} {losses[d].mean():.4f}" for d in CANDIDATES)
    return spec.with_skills(best), (
        f"n_skills {best}: held-out log-loss {scores} (difference {float(diff.mean()):+.4f} ± {se:.4f}) on the "
        f"last {HOLDOUT:.0%} of {test['student_id'].nunique()} students' answers ({len(test)} answers; "
        f"MAP fits of d = {' and '.join(map(str, CANDIDATES))} to their other {len(train)} rows, "
        f"{time.perf_counter() - t0:.1f} s)")
