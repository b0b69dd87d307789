"""Offline evaluation of lesson paths: would students have done better on the branch the
model recommends? (DESIGN §7 "Recommendations as decisions", issue 17 part 1)

Predictive metrics (`protocols`) say whether the model forecasts answers; they do not
say whether its *recommendations* help.  Logs hold natural experiments for that: the
"bubble" protocol of the original LSE code (repository rddy/lentil, notebook
``bubble_experiments``), improved here.

Bubbles
    Among held-out students, a *bubble* is a start lesson S and a final assessment A
    joined by two different lesson paths of the same length k (``min_length`` ≤ k ≤
    ``max_length`` lessons, S the first lesson of both, as in the original: the
    branches differ after S): the student takes the k lessons at steps t..t+k−1
    (t = the step of S) and answers A at step t+k, in the state the path led to.
    Each path must be taken by at least ``min_students`` held-out students and the
    pass rate on A over both branches must lie strictly between 0 and 1.  A student
    counts once per (S, A, k), with its earliest occurrence, so nobody sits on both
    branches of one bubble; the lessons and A must occur in the training students'
    rows (the model knows them).  Items act as lessons on assessment-only data
    (``--items-as-lessons``: each answered item is also a lesson, as in the original).
Fit
    One fit on the training students plus every held-out student's history cut at
    each of its bubble starts (answers at steps ≤ t, lessons before t), each cut a
    pseudo-student ``<id>@<t>`` (``cut="each"``, default): the state at a bubble
    start then uses everything the student did before it and nothing after.  (The
    original refit once per "round" of student-disjoint bubbles; pseudo-students give
    the same information in one fit, at the cost of counting the early history of a
    student in several bubbles more than once for the module parameters.)
    ``cut="earliest"`` cuts each student once, at its first bubble start, and pushes
    the state to later starts through the lessons taken (answers in between unused).
    Placing held-out students without a refit (`recommend.place_student`) is not
    used: with MAP's single draw it returns one random particle, not the state.
Recommendation
    For each student in a bubble, the state at the start (all posterior draws) is
    pushed through each branch by the learning update (``update``, as in
    `FittedLSE.predict`) and the pass probability on A is computed; the recommended
    branch has the higher posterior-mean probability, and ``p_better`` is the share
    of draws in which it is higher (0/1 for MAP).  Baselines through the same
    protocol: ``popular`` (the branch more training students took, from S, over the
    same k lessons), ``random`` (a seeded coin per student) and ``no-lessons`` (the
    same LSE with lessons off: both branches then predict the same, so its ties are
    broken by the same coin — it shows what "no information about lessons" scores).
Outcome comparison
    Students chose their branch, so those who matched the recommendation may differ
    from those who did not.  Per bubble a propensity P(branch 1 | x) is fitted by
    ridge logistic regression (numpy Newton steps) on features of the history before
    the start (answers and pass rate, overall and over the last 10, lessons taken,
    earlier answers to A and their pass rate); each student weighs 1/P(its branch | x),
    clipped to [``clip``, 1 − ``clip``].  The weighted pass rates of students who
    followed the recommendation (p) and who did not (q) estimate, under "no
    unmeasured confounding given x", the pass rates of the policies "always the
    recommended branch" and "always the other one"; the *expected relative gain* of
    the original is the odds ratio p/(1−p)·(1−q)/q.  Pooled over bubbles:
    Σ_b n_b p_b(1−q_b) / Σ_b n_b (1−p_b) q_b (Mantel–Haenszel with the
    pseudo-population's cells, n_b students per arm; a bubble where everyone or
    nobody matched drops out).  Unweighted rates give the unadjusted version.  95%
    intervals: percentile bootstrap resampling students (a student in several
    bubbles moves as one), propensities refitted in every resample.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.evaluate.names import PATH_BASELINES, PATH_CUTS
from bayes_lse.model import terms as eq

if TYPE_CHECKING:
    from bayes_lse.api import FittedLSE, LatentSkillEmbedding
    from bayes_lse.data.log import InteractionLog

__all__ = [
    "Bubbles",
    "PathEvaluation",
    "branch_pass_draws",
    "evaluate_paths",
    "find_bubbles",
    "fit_propensity",
    "history_features",
    "odds_ratio_analysis",
    "pooled_odds_ratio",
    "relative_gain",
    "simulate_bubble_log",
]

#: separates a held-out student's id from the step its history is cut at
PSEUDO_SEP = "@"
#: the propensity model's features (history before the bubble start)
FEATURES = ("log_answers", "pass_logit", "recent_logit", "log_lessons", "log_final_answers", "final_rate")
RECENT = 10
_TIE = 1e-12


# =========================================================================== #
# finding bubbles
# =========================================================================== #
@dataclass
class Bubbles:
    """What `find_bubbles` found.

    `bubbles`: one row per kept bubble — ``bubble`` (int), ``start`` (lesson id),
    ``final`` (assessment id), ``length`` (lessons per branch), ``path0``, ``path1``
    (tuples of lesson ids, ``path0 < path1``), ``n0``, ``n1`` (students),
    ``pass0``, ``pass1`` (observed pass rates on the final assessment).
    `members`: one row per (bubble, student) — ``bubble``, ``student_id``,
    ``branch`` (0/1), ``start_step`` (t), ``final_step`` (t + k), ``outcome``.
    `counts`: ``heldout_students``, ``paths`` (distinct (S, A, path) with enough
    students), ``candidate_bubbles`` (pairs of such paths), ``kept_bubbles`` (pass rate
    strictly in (0, 1)), ``students`` (distinct students in kept bubbles),
    ``members``.
    """

    bubbles: pd.DataFrame
    members: pd.DataFrame
    counts: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _as_table(log: Any) -> pd.DataFrame:
    """The §2 table of a log, a table with timesteps, or anything `read_interactions` reads."""
    if hasattr(log, "table"):
        return log.table
    if isinstance(log, pd.DataFrame) and "timestep" in log.columns:
        return log
    from bayes_lse.data.log import read_interactions

    return read_interactions(log).table


def _student_sequences(table: pd.DataFrame) -> dict[str, tuple[dict[int, str], pd.DataFrame]]:
    """Per student: lesson module per step, and its assessment rows in time order
    (step, then table order)."""
    t = table
    out: dict[str, tuple[dict[int, str], pd.DataFrame]] = {}
    is_l = (t["module_type"] == "lesson").to_numpy()
    les = t.loc[is_l, ["student_id", "module_id", "timestep"]]
    ans = t.loc[~is_l, ["student_id", "module_id", "timestep", "outcome"]].copy()
    ans["_row"] = np.arange(len(ans))
    ans = ans.sort_values(["student_id", "timestep", "_row"], kind="stable")
    lesson_at: dict[str, dict[int, str]] = defaultdict(dict)
    for s, m, st in zip(les["student_id"].astype(str), les["module_id"].astype(str),
                        les["timestep"].to_numpy(np.int64), strict=True):
        lesson_at[s].setdefault(int(st), m)
    groups = {str(k): g for k, g in ans.groupby(ans["student_id"].astype(str), sort=False)}
    empty = ans.iloc[:0]
    for s in set(lesson_at) | set(groups):
        out[s] = (lesson_at.get(s, {}), groups.get(s, empty))
    return out


def find_bubbles(
    log: InteractionLog | pd.DataFrame,
    students: Iterable[str] | None = None,
    *,
    min_length: int = 2,
    max_length: int = 3,
    min_students: int = 10,
    known_lessons: Iterable[str] | None = None,
    known_assessments: Iterable[str] | None = None,
    min_history: int = 1,
) -> Bubbles:
    """Bubbles in the histories of `students` (default: all) — see the module doc.

    `known_lessons` / `known_assessments`: the modules a path and its final assessment
    may use (default: any).  `min_history`: answers a student needs before the start
    (at steps ≤ t) to enter a bubble — the model places the student from them and the
    propensity model reads them (default 1).
    """
    min_length = _check_int("min_length", min_length, 1)
    max_length = _check_int("max_length", max_length, 1)
    if max_length < min_length:
        raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
    min_students = _check_int("min_students", min_students, 1)
    min_history = _check_int("min_history", min_history, 0)
    table = _as_table(log)
    if students is not None:
        wanted = pd.Index([str(s) for s in students])
        table = table[table["student_id"].astype(str).isin(wanted)]
    kl = None if known_lessons is None else set(map(str, known_lessons))
    ka = None if known_assessments is None else set(map(str, known_assessments))
    seqs = _student_sequences(table)
    rec_key: list[tuple[str, str, int, tuple[str, ...]]] = []
    rec_student: list[str] = []
    rec_t: list[int] = []
    rec_out: list[float] = []
    for s, (lesson_at, ans) in seqs.items():
        if not lesson_at or ans.empty:
            continue
        a_step = ans["timestep"].to_numpy(np.int64)
        a_mod = ans["module_id"].astype(str).to_numpy()
        a_out = ans["outcome"].to_numpy(float)
        # first answer to each assessment at each step
        first: dict[int, dict[str, float]] = defaultdict(dict)
        for st, m, y in zip(a_step, a_mod, a_out, strict=True):
            first[int(st)].setdefault(m, y)
        for t in sorted(lesson_at):
            if min_history and np.searchsorted(a_step, t, side="right") < min_history:
                continue
            path: list[str] = []
            for k in range(1, max_length + 1):
                m = lesson_at.get(t + k - 1)
                if m is None or (kl is not None and m not in kl):
                    break
                path.append(m)
                if k < min_length:
                    continue
                tp = tuple(path)
                for a, y in first.get(t + k, {}).items():
                    if ka is not None and a not in ka:
                        continue
                    rec_key.append((path[0], a, k, tp))
                    rec_student.append(s)
                    rec_t.append(t)
                    rec_out.append(y)
    heldout = len(seqs)
    empty_b = pd.DataFrame(columns=["bubble", "start", "final", "length", "path0", "path1", "n0", "n1", "pass0", "pass1"])
    empty_m = pd.DataFrame(columns=["bubble", "student_id", "branch", "start_step", "final_step", "outcome"])
    settings = {"min_length": min_length, "max_length": max_length, "min_students": min_students,
                "min_history": min_history}
    if not rec_key:
        return Bubbles(empty_b, empty_m, {"heldout_students": heldout, "paths": 0, "candidate_bubbles": 0,
                                          "kept_bubbles": 0, "students": 0, "members": 0}, settings)
    recs = pd.DataFrame({"start": [k[0] for k in rec_key], "final": [k[1] for k in rec_key],
                         "length": [k[2] for k in rec_key], "path": [k[3] for k in rec_key],
                         "student_id": rec_student, "start_step": rec_t, "outcome": rec_out})
    # each student once per (S, A, k): its earliest occurrence
    recs = recs.sort_values("start_step", kind="stable").drop_duplicates(["student_id", "start", "final", "length"])
    # group by a string key: a tuple inside a MultiIndex key would be read as several levels
    recs["key"] = [f"{s}\x1f{a}\x1f{k}\x1f" + "\x1f".join(p)
                   for s, a, k, p in zip(recs["start"], recs["final"], recs["length"], recs["path"], strict=True)]
    size = recs["key"].value_counts()
    recs = recs[recs["key"].isin(size.index[size >= min_students])]
    groups = {key: g for key, g in recs.groupby("key", sort=False)}
    by_end: dict[tuple[str, str, int], list[tuple[str, ...]]] = defaultdict(list)
    for g in groups.values():
        r = g.iloc[0]
        by_end[(r["start"], r["final"], int(r["length"]))].append(r["path"])
    n_paths = len(groups)

    def group(s: str, a: str, k: int, p: tuple[str, ...]) -> pd.DataFrame:
        return groups[f"{s}\x1f{a}\x1f{k}\x1f" + "\x1f".join(p)]

    b_rows, m_frames = [], []
    n_cand = 0
    for (s, a, k), paths in sorted(by_end.items()):
        paths = sorted(paths)
        for i in range(len(paths)):
            for j in range(i + 1, len(paths)):
                n_cand += 1
                g0, g1 = group(s, a, k, paths[i]), group(s, a, k, paths[j])
                rate = (g0["outcome"].sum() + g1["outcome"].sum()) / (len(g0) + len(g1))
                if not 0 < rate < 1:
                    continue
                b = len(b_rows)
                b_rows.append({"bubble": b, "start": s, "final": a, "length": k, "path0": paths[i], "path1": paths[j],
                               "n0": len(g0), "n1": len(g1), "pass0": float(g0["outcome"].mean()),
                               "pass1": float(g1["outcome"].mean())})
                for br, g in ((0, g0), (1, g1)):
                    m_frames.append(pd.DataFrame({"bubble": b, "student_id": g["student_id"].to_numpy(),
                                                  "branch": br, "start_step": g["start_step"].to_numpy(np.int64),
                                                  "final_step": g["start_step"].to_numpy(np.int64) + k,
                                                  "outcome": g["outcome"].to_numpy(float)}))
    bubbles = pd.DataFrame(b_rows) if b_rows else empty_b
    members = pd.concat(m_frames, ignore_index=True) if m_frames else empty_m
    counts = {"heldout_students": heldout, "paths": n_paths, "candidate_bubbles": n_cand,
              "kept_bubbles": int(len(bubbles)), "students": int(members["student_id"].nunique()),
              "members": int(len(members))}
    return Bubbles(bubbles, members, counts, settings)


# =========================================================================== #
# features, propensities, odds ratios
# =========================================================================== #
def history_features(log: InteractionLog | pd.DataFrame, members: pd.DataFrame, finals: Iterable[str]) -> np.ndarray:
    """Features of each member's history before its bubble start (answers at steps ≤
    start_step, lessons before it), in the order of :data:`FEATURES`: log(1 + answers),
    logit of the smoothed pass rate (passes + 1)/(answers + 2), the same over the last
    10 answers, log(1 + lessons), log(1 + earlier answers to the final assessment) and
    their smoothed pass rate − 0.5 (0 without any)."""
    table = _as_table(log)
    seqs = _student_sequences(table[table["student_id"].astype(str).isin(set(members["student_id"].astype(str)))])
    finals = list(finals)
    out = np.zeros((len(members), len(FEATURES)))
    cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, (s, t, a) in enumerate(zip(members["student_id"].astype(str), members["start_step"].to_numpy(np.int64),
                                      finals, strict=True)):
        if s not in cache:
            lesson_at, ans = seqs.get(s, ({}, None))
            st = ans["timestep"].to_numpy(np.int64) if ans is not None else np.zeros(0, np.int64)
            y = ans["outcome"].to_numpy(float) if ans is not None else np.zeros(0)
            mod = ans["module_id"].astype(str).to_numpy() if ans is not None else np.zeros(0, object)
            cache[s] = (st, np.concatenate([[0.0], np.cumsum(y)]), y, mod, np.sort(np.fromiter(lesson_at, np.int64)))
        st, cy, y, mod, lsteps = cache[s]
        n = int(np.searchsorted(st, t, side="right"))
        passes = cy[n]
        r0 = max(0, n - RECENT)
        recent_n, recent_p = n - r0, cy[n] - cy[r0]
        n_les = int(np.searchsorted(lsteps, t, side="left"))
        on_a = mod[:n] == str(a)
        na, pa = int(on_a.sum()), float(y[:n][on_a].sum())
        out[i] = [math.log1p(n), math.log((passes + 1) / (n - passes + 1)),
                  math.log((recent_p + 1) / (recent_n - recent_p + 1)), math.log1p(n_les), math.log1p(na),
                  (pa + 1) / (na + 2) - 0.5 if na else 0.0]
    return out


def fit_propensity(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, *, ridge: float = 1.0,
                   iterations: int = 50) -> np.ndarray:
    """P(y = 1 | x) by ridge logistic regression, for several weightings at once.

    `X` (n, f) is standardised (constant columns dropped); the intercept gets a tiny
    penalty (1e-4, so that a resample with one class stays finite), the slopes
    `ridge` — few students per bubble (tens) and a handful of features make an
    unpenalised fit separate easily.  `weights` (R, n) are frequency weights, one row
    per fit (bootstrap resamples); None = one fit with unit weights.  Newton's method,
    vectorised over the R fits.  Returns (R, n) probabilities ((n,) if `weights` is None).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    single = weights is None
    W = np.ones((1, n)) if single else np.asarray(weights, dtype=float)
    sd = X.std(axis=0) if n else np.zeros(X.shape[1])
    keep = sd > 1e-12
    Z = np.column_stack([np.ones(n), (X[:, keep] - X[:, keep].mean(axis=0)) / sd[keep]]) if n else np.ones((0, 1))
    f = Z.shape[1]
    pen = np.full(f, float(ridge))
    pen[0] = 1e-4
    beta = np.zeros((W.shape[0], f))
    for _ in range(iterations):
        mu = eq.sigmoid(beta @ Z.T)
        g = (W * (y - mu)) @ Z - pen * beta
        H = np.einsum("rn,ni,nj->rij", W * mu * (1 - mu), Z, Z) + np.diag(pen)
        step = np.linalg.solve(H, g[..., None])[..., 0]
        beta += step
        if np.max(np.abs(step)) < 1e-9:
            break
    p = eq.sigmoid(beta @ Z.T)
    return p[0] if single else p


def relative_gain(p: Any, q: Any) -> Any:
    """The original's "expected relative gain" p/(1−p)·(1−q)/q: the odds ratio of passing
    on the recommended branch (pass rate p) against the other one (q)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return p / (1 - p) * (1 - q) / q


def pooled_odds_ratio(p: Any, q: Any, n: Any) -> float:
    """Mantel–Haenszel odds ratio over bubbles with pass rates p (followed the
    recommendation) and q (did not) and n_b students per arm: Σ n p(1−q) / Σ n (1−p)q.
    Bubbles with a NaN rate (an empty arm) are left out; NaN when none is left or the
    denominator is 0."""
    p, q, n = (np.asarray(x, dtype=float) for x in (p, q, n))
    ok = np.isfinite(p) & np.isfinite(q) & (n > 0)
    num = float(np.sum(n[ok] * p[ok] * (1 - q[ok])))
    den = float(np.sum(n[ok] * (1 - p[ok]) * q[ok]))
    if not ok.any() or den <= 0:
        return float("inf") if ok.any() and num > 0 else float("nan")
    return num / den


def _arm_rates(outcome: np.ndarray, matched: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted pass rates of the matched / unmatched arm for each row of weights (R, n)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        wm, wu = w * matched, w * ~matched
        p = (wm @ outcome) / wm.sum(axis=1)
        q = (wu @ outcome) / wu.sum(axis=1)
    return p, q


def odds_ratio_analysis(
    members: pd.DataFrame,
    recommended: np.ndarray,
    features: np.ndarray,
    *,
    clip: float = 0.05,
    n_boot: int = 500,
    seed: int | None = 0,
    ridge: float = 1.0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Outcomes of students who followed the recommended branch against those who did not
    (module doc): per bubble and pooled, unadjusted and inverse-propensity weighted,
    with percentile bootstrap intervals over students.

    `members`: ``bubble``, ``student_id``, ``branch``, ``outcome`` (as `Bubbles.members`);
    `recommended` (n,) 0/1 per member; `features` (n, f) for the propensity model.
    Returns (per-bubble table, pooled figures).
    """
    if not 0 <= clip < 0.5:
        raise ValueError(f"clip must be in [0, 0.5), got {clip!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    n_boot = int(n_boot)
    rec = np.asarray(recommended).astype(int)
    branch = members["branch"].to_numpy().astype(int)
    y = members["outcome"].to_numpy(float)
    matched = rec == branch
    bub = members["bubble"].to_numpy()
    sid, uniq = pd.factorize(members["student_id"].astype(str))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=n_boot).astype(float) \
        if n_boot and len(uniq) else np.zeros((0, len(uniq)))
    Wall = np.vstack([np.ones((1, len(members))), counts[:, sid]])  # row 0: the data as observed
    ids = pd.unique(bub)
    R = Wall.shape[0]
    P_raw, Q_raw, P_ipw, Q_ipw, N = (np.full((R, len(ids)), np.nan) for _ in range(5))
    rows = []
    for bi, b in enumerate(ids):
        idx = np.flatnonzero(bub == b)
        W = Wall[:, idx]
        e1 = np.clip(fit_propensity(features[idx], branch[idx], W, ridge=ridge), clip, 1 - clip)
        e_own = np.where(branch[idx] == 1, e1, 1 - e1)
        P_raw[:, bi], Q_raw[:, bi] = _arm_rates(y[idx], matched[idx], W)
        P_ipw[:, bi], Q_ipw[:, bi] = _arm_rates(y[idx], matched[idx], W / e_own)
        N[:, bi] = W.sum(axis=1)
        m = matched[idx]
        rows.append({"bubble": b, "students": len(idx), "matched": int(m.sum()), "unmatched": int((~m).sum()),
                     "share_rec1": float(rec[idx].mean()),
                     "pass_matched": P_raw[0, bi], "pass_unmatched": Q_raw[0, bi],
                     "pass_matched_ipw": P_ipw[0, bi], "pass_unmatched_ipw": Q_ipw[0, bi],
                     "or_raw": _haldane(P_raw[0, bi], Q_raw[0, bi], m.sum(), (~m).sum()),
                     "or_ipw": _haldane(P_ipw[0, bi], Q_ipw[0, bi], m.sum(), (~m).sum()),
                     "propensity_min": float(e1[0].min()), "propensity_max": float(e1[0].max())})
    per_bubble = pd.DataFrame(rows)
    pooled: dict[str, float] = {"bubbles": int(len(ids)),
                                "bubbles_both_arms": int(np.sum(np.isfinite(P_raw[0]) & np.isfinite(Q_raw[0]))),
                                "members": int(len(members)), "students": int(len(uniq)),
                                "matched_share": float(matched.mean()) if len(matched) else float("nan")}
    for name, P, Q in (("raw", P_raw, Q_raw), ("ipw", P_ipw, Q_ipw)):
        vals = np.array([pooled_odds_ratio(P[r], Q[r], N[r]) for r in range(R)])
        pooled[f"or_{name}"] = float(vals[0])
        boot = vals[1:]
        boot = boot[~np.isnan(boot)]
        if len(boot) >= 2:
            # order statistics, no interpolation: a resample can give an infinite ratio (an arm
            # with no failures), and interpolating between inf and a number gives NaN
            lo, hi = np.quantile(boot, [0.025, 0.975], method="inverted_cdf")
            pooled[f"or_{name}_low"], pooled[f"or_{name}_high"] = float(lo), float(hi)
        else:
            pooled[f"or_{name}_low"] = pooled[f"or_{name}_high"] = float("nan")
        ok = np.isfinite(P[0]) & np.isfinite(Q[0])
        pooled[f"pass_matched_{name}"] = float(np.sum(N[0][ok] * P[0][ok]) / np.sum(N[0][ok])) if ok.any() else float("nan")
        pooled[f"pass_unmatched_{name}"] = float(np.sum(N[0][ok] * Q[0][ok]) / np.sum(N[0][ok])) if ok.any() else float("nan")
    pooled["n_boot"] = n_boot
    pooled["clip"] = float(clip)
    return per_bubble, pooled


def _haldane(p: float, q: float, n_m: int, n_u: int) -> float:
    """Per-bubble odds ratio with 0.5 added to each (effective) cell, so that a bubble
    with an arm that all passed or all failed has a finite value; NaN for an empty arm."""
    if not (n_m and n_u) or not (np.isfinite(p) and np.isfinite(q)):
        return float("nan")
    a, b, c, d = n_m * p + 0.5, n_m * (1 - p) + 0.5, n_u * q + 0.5, n_u * (1 - q) + 0.5
    return float(a * d / (b * c))


# =========================================================================== #
# the model's branch probabilities
# =========================================================================== #
def branch_pass_draws(
    fitted: FittedLSE,
    students: Iterable[str],
    sequences: list[list[str | None]],
    finals: Iterable[str],
    final_steps: Iterable[int],
    *,
    update: str = "expected",
) -> np.ndarray:
    """Pass-probability draws (S, n) on `finals` after pushing each student's last
    fitted state through its lesson sequence (lesson ids; None or a lesson the model
    does not know is a step without a lesson: noise only).  `final_steps` is the step
    the final answer is given at (for the history term's counts)."""
    from bayes_lse.results.posterior import pass_draws

    update = fitted.resolve_update(update)
    if update == "sample":
        raise ValueError("update must be 'expected' or 'mode' for branch comparisons")
    students = [str(s) for s in students]
    finals = [str(a) for a in finals]
    last = fitted.last_states()
    missing = sorted(set(students) - set(last.index))
    if missing:
        raise KeyError(f"student(s) {', '.join(missing[:3])} not in the fit")
    flat = last["state"].reindex(students).to_numpy(np.int64)
    states = fitted.state_draws(flat)
    use_lessons = fitted.model_config["lessons"] and fitted.has("gain")
    gain = fitted.draws("gain") if use_lessons else None
    prereq = fitted.draws("prerequisite") if use_lessons and fitted.has("prerequisite") else None
    noise = fitted.learning_noise_draws()[:, None, None]
    l_index = pd.Index([str(x) for x in fitted.lessons]) if use_lessons else pd.Index([])
    span = np.array([len(s) for s in sequences], dtype=np.int64)
    codes = np.full((len(sequences), int(span.max()) if len(span) else 0), -1, dtype=np.int64)
    for i, seq in enumerate(sequences):
        if seq:
            codes[i, : len(seq)] = l_index.get_indexer(["" if m is None else str(m) for m in seq])
    for k in range(codes.shape[1]):
        active = span > k
        nxt = eq.step_states(states, codes[:, k], gain, prereq, noise, update)
        states[:, active] = nxt[:, active]
    a_index = pd.Index([str(a) for a in fitted.assessments])
    a_idx = a_index.get_indexer(finals)
    if (a_idx < 0).any():
        raise KeyError(f"assessment {finals[int(np.argmax(a_idx < 0))]!r} is not in the fit")
    s_idx = pd.Index([str(s) for s in fitted.ids_of("student")]).get_indexer(students) \
        if fitted.has("student_bias") else None
    hist = fitted.history_of(pd.DataFrame({"student_id": students, "module_id": finals,
                                           "timestep": np.asarray(list(final_steps), dtype=np.int64)}),
                              sequential=False)
    return pass_draws(fitted, states, a_idx, s_idx, hist)


# =========================================================================== #
# the harness
# =========================================================================== #
@dataclass
class PathEvaluation:
    """What :func:`evaluate_paths` returns.

    `summary`: one row per recommender (``lse`` first) with the pooled odds ratios
    (``or_ipw`` and its 95% interval ``or_ipw_low``/``or_ipw_high``; ``or_raw``
    unadjusted), the share of students who followed the recommendation, pooled pass
    rates per arm and, for model recommenders, ``ties`` (students whose branches
    predict the same) and ``p_better`` (mean posterior probability that the
    recommended branch is better).  `bubbles`: the bubbles with one block of
    columns per recommender (``<rec>:or_ipw`` ...).  `members`: every (bubble,
    student) with its features, the LSE's predictions (``p0``, ``p1``, ``p_better``)
    and each recommender's choice (``rec:<name>``).
    """

    summary: pd.DataFrame
    bubbles: pd.DataFrame
    members: pd.DataFrame
    counts: dict[str, int]
    settings: dict[str, Any]
    fits: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            d = df.copy()
            for c in d.columns:
                if d[c].map(lambda v: isinstance(v, tuple)).any():
                    d[c] = d[c].map(lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else v)
            return json.loads(d.to_json(orient="records"))

        return {"settings": self.settings, "counts": self.counts, "summary": records(self.summary),
                "bubbles": records(self.bubbles)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_text(self) -> str:
        return format_text(self)


def _split_students(ids: np.ndarray, heldout: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    n_h = max(1, int(round(heldout * len(ids))))
    if n_h >= len(ids):
        raise ValueError(f"heldout={heldout} leaves no training students among {len(ids)}")
    return ids[np.sort(perm[:n_h])], ids[np.sort(perm[n_h:])]


def _pseudo_rows(table: pd.DataFrame, cuts: pd.DataFrame) -> pd.DataFrame:
    """Each (student_id, cut_step) of `cuts` as a pseudo-student ``<id>@<t>``: its answers
    at steps ≤ t and lessons before t."""
    base = ["student_id", "module_id", "module_type", "outcome", "timestep"]
    rows = table[base].copy()
    rows["student_id"] = rows["student_id"].astype(str)
    m = rows.merge(cuts[["student_id", "cut_step", "pseudo_id"]], on="student_id")
    st = m["timestep"].to_numpy(np.int64)
    keep = np.where(m["module_type"].to_numpy() == "lesson", st < m["cut_step"].to_numpy(), st <= m["cut_step"].to_numpy())
    m = m[keep]
    m = m.assign(student_id=m["pseudo_id"]).drop(columns=["cut_step", "pseudo_id"])
    return m[base]


def _popular_choice(train: pd.DataFrame, bubbles: pd.DataFrame, rng: np.random.Generator) -> dict[int, tuple[int, int, int]]:
    """Per bubble: (branch more training students took from the start lesson over the same
    lessons, count on branch 0, on branch 1); ties by the coin."""
    needed = set(bubbles["path0"]) | set(bubbles["path1"])
    lengths = sorted({len(p) for p in needed})
    takers: dict[tuple[str, ...], set[str]] = defaultdict(set)
    seqs = _student_sequences(train)
    for s, (lesson_at, _) in seqs.items():
        for t in lesson_at:
            for k in lengths:
                p = tuple(lesson_at.get(t + i) for i in range(k))
                if p in needed:
                    takers[p].add(s)
    out = {}
    for _, b in bubbles.iterrows():
        c0, c1 = len(takers[b["path0"]]), len(takers[b["path1"]])
        out[int(b["bubble"])] = (int(c1 > c0) if c0 != c1 else int(rng.integers(2)), c0, c1)
    return out


def evaluate_paths(
    log: InteractionLog | pd.DataFrame | str | Path,
    *,
    heldout: float = 0.2,
    seed: int | None = 0,
    min_length: int = 2,
    max_length: int = 3,
    min_students: int = 10,
    min_history: int = 1,
    model: LatentSkillEmbedding | Mapping[str, Any] | None = None,
    method: str = "map",
    fit_options: Mapping[str, Any] | None = None,
    baselines: Iterable[str] = PATH_BASELINES,
    cut: str = "each",
    update: str = "expected",
    clip: float = 0.05,
    n_boot: int = 500,
    max_students: int | None = None,
    keep_fits: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PathEvaluation:
    """The bubble protocol (module doc) on `log`: hold out a share `heldout` of the
    students (seeded), find bubbles in their histories, fit once, recommend a branch to
    every student in a bubble, and compare the outcomes of those who followed it with
    those who did not, adjusted by inverse propensity weights.

    `model`: the LSE to evaluate (a `LatentSkillEmbedding` or its config; default
    ``LatentSkillEmbedding(n_skills=2)``, history "auto" as on the command line), fit by `method` with `fit_options` (e.g.
    ``{"starts": 1, "maxiter": 200}``).  `baselines` from :data:`PATH_BASELINES`.
    `max_students`: evaluate a seeded random subset of this many students (long logs).
    Raises ValueError naming the setting when a parameter is out of range or no bubble
    is found (with the counts, so the user sees which constraint emptied the set).
    """
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.data.log import InteractionLog, read_interactions
    from bayes_lse.model.graph import METHODS

    say = progress or (lambda msg: None)
    t_all = time.perf_counter()
    if isinstance(heldout, bool) or not isinstance(heldout, (int, float)) or not 0 < heldout < 1:
        raise ValueError(f"heldout must be a share of students in (0, 1), got {heldout!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if cut not in PATH_CUTS:
        raise ValueError(f"cut must be one of {', '.join(PATH_CUTS)}, got {cut!r}")
    if update not in ("expected", "mode"):
        raise ValueError(f"update must be 'expected' or 'mode', got {update!r}")
    baselines = list(dict.fromkeys(str(b).strip().lower() for b in baselines))
    bad = [b for b in baselines if b not in PATH_BASELINES]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r}; choose from {', '.join(PATH_BASELINES)}")
    if not 0 <= clip < 0.5:
        raise ValueError(f"clip must be in [0, 0.5), got {clip!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    for name, v, low in (("min_length", min_length, 1), ("max_length", max_length, 1),
                         ("min_students", min_students, 1), ("min_history", min_history, 0)):
        _check_int(name, v, low)
    if max_length < min_length:
        raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
    if max_students is not None:
        _check_int("max_students", max_students, 2)
    if model is None:
        spec = LatentSkillEmbedding(n_skills=2)
    elif isinstance(model, LatentSkillEmbedding):
        spec = model
    elif isinstance(model, Mapping):
        spec = LatentSkillEmbedding.from_config(dict(model))
    else:
        raise TypeError(f"model must be a LatentSkillEmbedding or a config dict, got {type(model).__name__}")
    if not spec.config["lessons"]:
        raise ValueError("the model to evaluate has lessons=False: it cannot tell two lesson paths apart "
                         "(it is the 'no-lessons' baseline)")
    if not isinstance(log, InteractionLog):
        log = read_interactions(log)
    table = log.table
    if not (table["module_type"] == "lesson").any():
        raise ValueError(f"{log.source}: the log has no lessons, so there are no lesson paths; on assessment-only "
                         "data let every answered item act as a lesson (--items-as-lessons with --from assistments-dkt)")
    all_ids = np.asarray(log.students, dtype=object).astype(str)
    if max_students is not None and max_students < len(all_ids):
        pick = np.sort(np.random.default_rng(seed).choice(len(all_ids), size=max_students, replace=False))
        all_ids = all_ids[pick]
        table = table[table["student_id"].astype(str).isin(set(all_ids))]
    held_ids, train_ids = _split_students(all_ids, float(heldout), seed)
    sid = table["student_id"].astype(str)
    train = table[sid.isin(set(train_ids)).to_numpy()]
    held = table[sid.isin(set(held_ids)).to_numpy()]
    is_l = train["module_type"] == "lesson"
    known_l = set(train.loc[is_l, "module_id"].astype(str))
    known_a = set(train.loc[~is_l, "module_id"].astype(str))
    say(f"{log.source}: {len(all_ids)} students ({len(held_ids)} held out, seed {seed}); finding bubbles "
        f"(paths of {min_length}-{max_length} lessons, >= {min_students} students each) ...")
    t0 = time.perf_counter()
    found = find_bubbles(held, min_length=min_length, max_length=max_length, min_students=min_students,
                         known_lessons=known_l, known_assessments=known_a, min_history=min_history)
    counts = dict(found.counts)
    counts["students_total"] = int(len(all_ids))
    counts["training_students"] = int(len(train_ids))
    t_find = time.perf_counter() - t0
    say(f"  {counts['paths']} paths with >= {min_students} students, {counts['candidate_bubbles']} candidate "
        f"bubbles, {counts['kept_bubbles']} kept (pass rate in (0, 1)), {counts['students']} students "
        f"({t_find:.1f} s)")
    if counts["kept_bubbles"] == 0:
        raise ValueError(
            f"{log.source}: no bubbles found among {counts['heldout_students']} held-out students "
            f"({counts['paths']} lesson paths of {min_length}-{max_length} lessons taken by >= {min_students} of them, "
            f"{counts['candidate_bubbles']} candidate bubbles, none with a pass rate strictly between 0 and 1); "
            "lower min_students, raise heldout or max_length, or use a log with more students on shared paths")
    bubbles, members = found.bubbles.copy(), found.members.copy()
    members["final"] = members["bubble"].map(bubbles.set_index("bubble")["final"])

    # ---- one fit: training students + held-out histories cut at the bubble starts --- #
    taken = set(all_ids)
    if cut == "each":
        cuts = members[["student_id", "start_step"]].drop_duplicates().rename(columns={"start_step": "cut_step"})
    else:
        cuts = members.groupby("student_id", as_index=False)["start_step"].min().rename(columns={"start_step": "cut_step"})
    cuts["pseudo_id"] = cuts["student_id"].astype(str) + PSEUDO_SEP + cuts["cut_step"].astype(str)
    clash = set(cuts["pseudo_id"]) & taken
    if clash:
        raise ValueError(f"student id {sorted(clash)[0]!r} looks like a cut history ('<id>{PSEUDO_SEP}<step>'); "
                         "rename it")
    if cut == "each":
        members = members.merge(cuts, left_on=["student_id", "start_step"], right_on=["student_id", "cut_step"])
    else:
        members = members.merge(cuts, on="student_id")
    members = members.sort_values(["bubble", "branch", "student_id"], kind="stable").reset_index(drop=True)
    base = ["student_id", "module_id", "module_type", "outcome", "timestep"]
    fit_table = pd.concat([train[base], _pseudo_rows(held, cuts)], ignore_index=True)
    fit_log = read_interactions(fit_table, name=f"{log.source} (training students + cut histories)")
    opts = {"progressbar": False, **dict(fit_options or {})}
    if seed is not None:
        opts.setdefault("seed", seed)
    say(f"fitting {spec.config['n_skills']}-skill LSE by {method.upper()} on {fit_log.n_students} students "
        f"({len(cuts)} cut histories), {int((fit_table['module_type'] == 'assessment').sum())} answers ...")
    t0 = time.perf_counter()
    fitted = spec.fit(fit_log, method=method, **opts)
    t_fit = {"lse": time.perf_counter() - t0}
    say(f"  fit {t_fit['lse']:.1f} s")

    # ---- the lessons each member is pushed through: cut → start (taken), then the branch --- #
    seqs = _student_sequences(held)
    b_idx = bubbles.set_index("bubble")
    last = fitted.last_states()["step"]
    prefix: list[list[str | None]] = []
    branch_paths: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for s, pid, t, b in zip(members["student_id"].astype(str), members["pseudo_id"], members["start_step"],
                            members["bubble"], strict=True):
        c = int(last[pid])
        lesson_at = seqs[s][0]
        prefix.append([lesson_at.get(k) for k in range(c, int(t))])
        branch_paths.append((b_idx.at[b, "path0"], b_idx.at[b, "path1"]))

    def score(fit: FittedLSE) -> tuple[np.ndarray, np.ndarray]:
        seq_all = [pre + list(bp[0]) for pre, bp in zip(prefix, branch_paths, strict=True)] + \
                  [pre + list(bp[1]) for pre, bp in zip(prefix, branch_paths, strict=True)]
        n = len(members)
        draws = branch_pass_draws(fit, list(members["pseudo_id"]) * 2, seq_all, list(members["final"]) * 2,
                                  list(members["final_step"]) * 2, update=update)
        return draws[:, :n], draws[:, n:]

    coin = np.random.default_rng(None if seed is None else seed + 1).integers(0, 2, size=len(members))
    recs: dict[str, np.ndarray] = {}
    extra: dict[str, dict[str, float]] = {}
    d0, d1 = score(fitted)
    p0, p1 = d0.mean(axis=0), d1.mean(axis=0)
    tie = np.abs(p1 - p0) <= _TIE
    recs["lse"] = np.where(tie, coin, (p1 > p0).astype(int))
    better = np.where(recs["lse"][None] == 1, d1 > d0, d0 > d1).mean(axis=0)
    members["p0"], members["p1"], members["p_better"] = p0, p1, better
    extra["lse"] = {"ties": int(tie.sum()), "p_better": float(better.mean()), "draws": int(d0.shape[0])}
    fits = {"lse": fitted} if keep_fits else {}
    for name in baselines:
        if name == "random":
            recs[name] = coin.copy()
        elif name == "popular":
            pop = _popular_choice(train, bubbles, np.random.default_rng(None if seed is None else seed + 2))
            recs[name] = members["bubble"].map({b: v[0] for b, v in pop.items()}).to_numpy(int)
            bubbles["popular_n0"] = bubbles["bubble"].map({b: v[1] for b, v in pop.items()})
            bubbles["popular_n1"] = bubbles["bubble"].map({b: v[2] for b, v in pop.items()})
        elif name == "no-lessons":
            nl = LatentSkillEmbedding.from_config({**spec.config, "lessons": False})
            say("fitting the same LSE without lessons (baseline no-lessons) ...")
            t0 = time.perf_counter()
            fit_nl = nl.fit(fit_log, method=method, **opts)
            t_fit[name] = time.perf_counter() - t0
            e0, e1 = score(fit_nl)
            q0, q1 = e0.mean(axis=0), e1.mean(axis=0)
            tnl = np.abs(q1 - q0) <= _TIE
            recs[name] = np.where(tnl, coin, (q1 > q0).astype(int))
            extra[name] = {"ties": int(tnl.sum()), "p_better": float("nan"), "draws": int(e0.shape[0])}
            if keep_fits:
                fits[name] = fit_nl
            say(f"  fit {t_fit[name]:.1f} s; {int(tnl.sum())} of {len(members)} students tied")

    # ---- outcomes: followed the recommendation or not, IPW-adjusted ------------------ #
    X = history_features(held, members, members["final"])
    for j, f in enumerate(FEATURES):
        members[f] = X[:, j]
    summary_rows = []
    for name, rec in recs.items():
        members[f"rec:{name}"] = rec
        per, pooled = odds_ratio_analysis(members, rec, X, clip=clip, n_boot=int(n_boot), seed=seed)
        keep_cols = ["share_rec1", "matched", "pass_matched_ipw", "pass_unmatched_ipw", "or_raw", "or_ipw"]
        per = per.set_index("bubble")[keep_cols].add_prefix(f"{name}:")
        bubbles = bubbles.merge(per, left_on="bubble", right_index=True, how="left")
        summary_rows.append({"recommender": name, **pooled, **extra.get(name, {"ties": 0, "p_better": float("nan"),
                                                                               "draws": 0}),
                             "fit_seconds": t_fit.get(name, 0.0)})
    # the LSE's per-bubble choice: the branch with the higher mean predicted probability
    g = members.groupby("bubble")[["p0", "p1"]].mean()
    bubbles["lse:pred0"] = bubbles["bubble"].map(g["p0"])
    bubbles["lse:pred1"] = bubbles["bubble"].map(g["p1"])
    summary = pd.DataFrame(summary_rows)
    settings = {"source": str(log.source), "heldout": float(heldout), "seed": seed, "min_length": min_length,
                "max_length": max_length, "min_students": min_students, "min_history": min_history,
                "method": method, "fit_options": {k: v for k, v in opts.items() if k != "progressbar"},
                "model_config": fitted.model_config, "baselines": baselines, "cut": cut, "update": update,
                "clip": float(clip), "n_boot": int(n_boot), "max_students": max_students,
                "fit_students": int(fit_log.n_students), "fit_answers": int((fit_table["module_type"] == "assessment").sum()),
                "cut_histories": int(len(cuts)), "find_seconds": t_find, "seconds": time.perf_counter() - t_all}
    return PathEvaluation(summary=summary, bubbles=bubbles, members=members, counts=counts, settings=settings,
                          fits=fits)


# =========================================================================== #
# text output
# =========================================================================== #
def _f(v: Any, digits: int = 2) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _render(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _path(p: Any, limit: int = 40) -> str:
    s = " ".join(map(str, p)) if isinstance(p, tuple) else str(p)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def format_text(res: PathEvaluation) -> str:
    s, c = res.settings, res.counts
    parts = [
        f"{s['source']}: {c['students_total']} students, {c['heldout_students']} held out (seed {s['seed']})",
        f"bubbles: paths of {s['min_length']}-{s['max_length']} lessons taken by >= {s['min_students']} held-out "
        f"students: {c['paths']} paths, {c['candidate_bubbles']} candidate bubbles, {c['kept_bubbles']} kept "
        f"(pass rate strictly in (0, 1)); {c['students']} students, {c['members']} (bubble, student) pairs",
        f"LSE d={s['model_config']['n_skills']} by {s['method'].upper()} on {s['fit_students']} students "
        f"({s['cut_histories']} cut histories, cut={s['cut']}), update={s['update']}; "
        f"propensities clipped to [{s['clip']}, {1 - s['clip']}]; 95% intervals: {s['n_boot']} bootstrap "
        "resamples of students",
        "",
        "pooled odds ratio of passing the final assessment, followed the recommendation vs not "
        "(expected relative gain; > 1: the recommendation helps)",
    ]
    rows = []
    for _, r in res.summary.iterrows():
        rows.append([r["recommender"], str(int(r["bubbles_both_arms"])), _f(r["matched_share"]),
                     _f(r["pass_matched_ipw"]), _f(r["pass_unmatched_ipw"]), _f(r["or_ipw"]),
                     f"[{_f(r['or_ipw_low'])}, {_f(r['or_ipw_high'])}]", _f(r["or_raw"]),
                     f"[{_f(r['or_raw_low'])}, {_f(r['or_raw_high'])}]", str(int(r["ties"])), _f(r["p_better"])])
    parts.append(_render(["recommender", "bubbles", "followed", "pass followed", "pass other", "OR (IPW)", "95% interval",
                          "OR (raw)", "95% interval", "ties", "P(better)"], rows))
    parts.append("")
    parts.append("bubbles (branch pass rates observed; LSE: mean predicted pass probability per branch, share "
                 "recommended branch 1, per-bubble IPW odds ratio with 0.5 added to each cell)")
    rows = []
    for _, b in res.bubbles.head(30).iterrows():
        rows.append([str(int(b["bubble"])), str(b["start"]), str(b["final"]), _path(b["path0"]), _path(b["path1"]),
                     f"{int(b['n0'])}/{int(b['n1'])}", f"{_f(b['pass0'])}/{_f(b['pass1'])}",
                     f"{_f(b['lse:pred0'])}/{_f(b['lse:pred1'])}", _f(b["lse:share_rec1"]), _f(b["lse:or_ipw"])])
    parts.append(_render(["#", "start", "final", "branch 0", "branch 1", "students", "pass", "LSE pred", "rec 1",
                          "OR (IPW)"], rows))
    if len(res.bubbles) > 30:
        parts.append(f"... {len(res.bubbles) - 30} more bubbles (--format json lists all)")
    parts.append("")
    parts.append(f"total {s['seconds']:.1f} s")
    return "\n".join(parts) + "\n"


# =========================================================================== #
# a simulated log where the better branch is known
# =========================================================================== #
def simulate_bubble_log(
    n_students: int = 600,
    n_units: int = 6,
    *,
    n_skills: int = 2,
    seed: int | None = 0,
    learning_noise: float = 0.2,
    confounding: float = 1.0,
    gain: float = 1.2,
    n_practice: int = 12,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A cohort whose bubbles have a known better branch (no prerequisites).

    Students go through `n_units` units in order.  Unit u trains skill u mod d: at its
    first step the student answers three of `n_practice` practice assessments (each
    on one skill, difficulties spread from 0.5 to 5 so that they stay informative as
    skills grow) and takes the start lesson ``S<u>`` (gain 0.1 on every skill); at the
    next step it answers two practice items and takes ``G<u>`` (gain `gain` on the
    unit's skill) or ``B<u>`` (the same gain on the next skill; with d = 1, gain 0.1);
    at the step after it answers the unit's final ``F<u>``, on the unit's skill, with a
    difficulty that follows the cohort's expected skill (1.6 + 0.7·u·2/d), so that its
    pass rate stays away from 0 and 1.  (S<u>, G<u>) vs (S<u>, B<u>) → F<u> is then a
    bubble whose better branch is G for everyone.  The choice is confounded *against*
    the truth: P(G) = σ(−`confounding`·(s_unit − s_next)) (d = 1: s − 1 − 0.7·u),
    weaker students take G more often, so the raw comparison understates G's advantage.
    Outcomes from σ(D(s, a) + g_u) with student biases N(0, 0.5²) and the
    truncated-normal learning update (σ_L = `learning_noise`).

    Returns the interaction table and the truth: ``states`` (student → (steps, d)
    array), ``gain``, ``requirement`` (id → vector), ``student_bias``,
    ``assessment_bias`` (all 0), ``learning_noise``.
    """
    rng = np.random.default_rng(seed)
    d = _check_int("n_skills", n_skills, 1)
    U = _check_int("n_students", n_students, 1)
    eye = np.eye(d)
    req: dict[str, np.ndarray] = {f"P{j}": eye[j % d] * r for j, r in enumerate(np.linspace(0.5, 5.0, n_practice))}
    p_ids = list(req)
    gains: dict[str, np.ndarray] = {}
    for u in range(n_units):
        e, o = eye[u % d], eye[(u + 1) % d]
        req[f"F{u}"] = e * (1.6 + 0.7 * u * 2 / d)
        gains[f"S{u}"] = np.full(d, 0.1)
        gains[f"G{u}"] = gain * e
        gains[f"B{u}"] = gain * o if d > 1 else np.full(d, 0.1)
    sid = np.array([f"u{i:04d}" for i in range(U)], dtype=object)
    s_bias = rng.normal(0.0, 0.5, U)
    s = np.abs(rng.normal(0.0, 1.0, (U, d)))
    traj = [s]
    rows: list[pd.DataFrame] = []
    order = 0

    def answer(modules: np.ndarray, state: np.ndarray, step: int) -> None:
        nonlocal order
        a = np.stack([req[m] for m in modules])
        y = (rng.random(U) < eq.pass_probability(state, a, s_bias)).astype(float)
        rows.append(pd.DataFrame({"student_id": sid, "module_id": modules, "module_type": "assessment",
                                  "outcome": y, "timestep": step, "_o": order}))
        order += 1

    def learn(modules: np.ndarray, state: np.ndarray, step: int) -> np.ndarray:
        nonlocal order
        rows.append(pd.DataFrame({"student_id": sid, "module_id": modules, "module_type": "lesson",
                                  "outcome": np.nan, "timestep": step, "_o": order}))
        order += 1
        mu = eq.expected_update(state, np.stack([gains[m] for m in modules]))
        return eq.sample_truncated_normal(mu, learning_noise, rng)

    t = 0
    for u in range(n_units):
        picks = np.argsort(rng.random((U, n_practice)), axis=1)
        for j in range(3):
            answer(np.asarray(p_ids, dtype=object)[picks[:, j]], s, t)
        s = learn(np.full(U, f"S{u}", dtype=object), s, t)
        t += 1
        traj.append(s)
        for j in range(3, 5):
            answer(np.asarray(p_ids, dtype=object)[picks[:, j]], s, t)
        ref = s[:, (u + 1) % d] if d > 1 else 1.0 + 0.7 * u
        good = rng.random(U) < eq.sigmoid(-confounding * (s[:, u % d] - ref))
        s = learn(np.where(good, f"G{u}", f"B{u}").astype(object), s, t)
        t += 1
        traj.append(s)
        answer(np.full(U, f"F{u}", dtype=object), s, t)
    table = (pd.concat(rows, ignore_index=True).sort_values(["student_id", "_o"], kind="stable")
             .drop(columns="_o").reset_index(drop=True))
    states = np.stack(traj, axis=1)  # (U, steps, d)
    truth = {"states": dict(zip(sid, states, strict=True)), "gain": gains, "requirement": req,
             "student_bias": dict(zip(sid, s_bias, strict=True)),
             "assessment_bias": {k: 0.0 for k in req}, "learning_noise": learning_noise}
    return table, truth
