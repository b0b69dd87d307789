"""The skill dimension d and the lessons chosen from the data: ``n_skills="auto"`` and
``lessons="auto"`` (the defaults; `choose_structure`).

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

Lessons (issue 15, docs/results.md "Lessons chosen from the data"): a log converted with
items as lessons (`ITEMS_AS_LESSONS_SHARE` of its answers mirrored by a lesson of the same
module at the same step) is fitted without them — every method, no check.  Elsewhere the
check fits each candidate d without lessons as well and drops them only past
`LESSONS_MARGIN` and `LESSONS_SE` (`lessons_verdict`): the check's short fits understate
what lessons cost where they hurt (ASSISTments with item lessons, three CV training sets:
0.010–0.051 lower log-loss without them on the check's 150 students, one of them within 2
SE; 0.32 on the full 5-fold evaluation), so it is a safety net, not a fine ranking, and a
tie keeps the lessons the recommender needs.
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
    """(training rows, held-out rows) of `n_students` random students of `log`.

    A student's rows in time order (timestep, then the order read); its last `share` of
    answers (at least one) are held out with every row after the first of them, as in
    `bayes-lse evaluate --protocol last-fraction`: the held-out rows are those answers and
    the lessons among them (a model with lessons is pushed through them to the answers
    after).  Students left with no training row are dropped."""
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
    test = sub.loc[held, cols]
    test = test[test["student_id"].isin(set(train["student_id"]))]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def heldout_logloss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-answer log-loss of pass probabilities `p` for outcomes `y` (clipped at 1e-9)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    y = np.asarray(y, dtype=float)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


#: answers that are also lessons of the same module at the same step
#: (`InteractionLog.mirrored_answer_share`) from which "auto" drops the lessons without a
#: check: a log converted with items as lessons (1.0; MoFaCTS, real study trials: 0.024)
ITEMS_AS_LESSONS_SHARE = 0.9

#: the model without lessons is kept only when its held-out log-loss is lower by more than
#: this (nats per answer) and by more than `LESSONS_SE` paired standard errors: dropping
#: the lessons costs the recommender everything it recommends, so a tie keeps them
LESSONS_MARGIN = 0.01
LESSONS_SE = 2.0


def lessons_verdict(loss_with: np.ndarray, loss_without: np.ndarray) -> tuple[bool, float, float]:
    """(keep the lessons?, mean difference without − with, its paired standard error) from
    per-answer held-out log-losses: the lessons go only when the model without them is
    lower by more than `LESSONS_MARGIN` and by more than `LESSONS_SE` standard errors."""
    diff = np.asarray(loss_without, dtype=float) - np.asarray(loss_with, dtype=float)
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    drop = mean < -LESSONS_MARGIN and mean < -LESSONS_SE * se
    return not drop, mean, se


def choose_structure(
    spec: ModelSpec,
    log: InteractionLog,
    method: str,
    fit: Callable[[ModelSpec, pd.DataFrame, Mapping[str, Any]], Any],
    options: Mapping[str, Any] | None = None,
) -> tuple[ModelSpec, list[str]]:
    """`spec` with ``n_skills="auto"`` and ``lessons="auto"`` decided for `log`, and the
    reasons (one line each, for ``fitted.choices``).

    d: the candidates of `CANDIDATES`, the lower held-out log-loss kept.  Lessons: a log
    converted with items as lessons (at least `ITEMS_AS_LESSONS_SHARE` of its answers
    mirrored by a lesson of the same module at the same step) gets none, by any method and
    without a check; such lessons add no observation the history term does not count, and
    forecasts through their gains overshoot (ASSISTments with item lessons: AUC 0.722 /
    log-loss 0.777 with them, 0.813 / 0.484 without; docs/results.md).  Another log with
    lesson rows: the best d with lessons is fitted once more without them (with the history
    term's practice counts, as any model without lessons), and the lessons are dropped only
    when that predicts the held-out answers clearly better (`lessons_verdict`); then every
    d is scored without lessons and the best kept.  On MoFaCTS, whose study trials are real
    lessons, the two tie and the lessons stay.  The candidates with lessons are pushed
    through the held-out lessons to the answers after them, as `bayes-lse evaluate` does.

    `fit(spec, table, options)` fits a candidate and returns an object with
    ``predict(table)`` (a `FitResult`); `options` are the fit's settings, passed to each
    candidate's fit with the seed.  Where a candidate is fitted, the history term is
    decided for the full log (`ModelSpec.resolve_history`) for every candidate and the
    returned spec has it decided too (its reason among the lines).  A spec with nothing
    "auto" comes back as it is."""
    cfg = spec.config
    lines: list[str] = []
    if cfg["lessons"] == "auto" and not log.n_lessons:
        spec = spec.with_lessons(True)  # no lesson rows: nothing to choose, and the same model either way
    elif cfg["lessons"] == "auto" and (share := log.mirrored_answer_share()) >= ITEMS_AS_LESSONS_SHARE:
        spec = spec.with_lessons(False)
        lines.append(
            f"lessons off: {share:.0%} of the answers are also lessons of the same module at the same step (items as "
            "lessons), which add no observation the history term does not count and whose learned gains make "
            "forecasts overshoot (ASSISTments, last 10 %: AUC 0.722 with them, 0.815 without, 0.828 for the same "
            "answers converted without item lessons, whose states take no step per item); --lessons keeps them")
    d_auto = spec.config["n_skills"] == "auto"
    l_auto = spec.config["lessons"] == "auto"
    if not (d_auto or l_auto):
        return spec, lines
    from bayes_lse.inference.defaults import CHECK_MAXITER, resolve_map_settings

    def defaults(reason: str) -> tuple[ModelSpec, list[str]]:
        out = spec
        if d_auto:
            out = out.with_skills(DEFAULT_SKILLS)
            lines.append(f"n_skills {DEFAULT_SKILLS}: the default d ({reason})")
        if l_auto:
            out = out.with_lessons(True)
            lines.append(f"lessons on: the default ({reason})")
        return out, lines

    what = " and ".join(w for w, on in (("d", d_auto), ("lessons", l_auto)) if on)
    if method != "map":
        return defaults(f"the held-out choice of {what} runs for MAP fits only")
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG, merge

    opts = {k: v for k, v in (options or {}).items() if k != "progressbar"}
    seed = int(opts.get("seed") or 0)
    t0 = time.perf_counter()
    train, test = holdout_split(log, STUDENTS, HOLDOUT, seed)
    answers = test[test["module_type"] == "assessment"]
    if len(answers) < MIN_HELDOUT:
        return defaults(f"{len(answers)} held-out answers < {MIN_HELDOUT}: too few to choose {what}")
    # the settings of a large log's full fit (compiled centred kernel, one start): a ranking, cheap at any size
    resolved, _ = resolve_map_settings(merge(DEFAULT_FIT_CONFIG["map"], {**opts, "parametrization": "centered"},
                                             "map fit"), log)
    cand_opts = {**opts, **{k: resolved[k] for k in ("maxiter", "parametrization", "kernel_backend")},
                 "starts": 1, "seed": seed}
    if (options or {}).get("maxiter", "auto") == "auto":  # a ranking, not the final fit: a short budget
        cand_opts["maxiter"] = CHECK_MAXITER
    y = answers["outcome"].to_numpy()
    # held-out lessons a candidate has never seen cannot be pushed through (none on the real logs' checks)
    known = set(train.loc[train["module_type"] == "lesson", "module_id"])
    with_lessons = test[(test["module_type"] == "assessment") | test["module_id"].isin(known)]

    def held_out_loss(candidate: ModelSpec) -> np.ndarray:
        fitted = fit(candidate, train, cand_opts)
        return heldout_logloss(fitted.predict(with_lessons if candidate.config["lessons"] else answers)["p_mean"]
                               .to_numpy(), y)

    def resolved_spec(**changes: Any) -> tuple[ModelSpec, str | None]:
        return type(spec).from_config({**spec.config, **changes}).resolve_history(log)

    scope = (f"on the last {HOLDOUT:.0%} of {answers['student_id'].nunique()} students' answers ({len(answers)} "
             f"answers; MAP fits to their other {len(train)} rows")
    dims = CANDIDATES if d_auto else (int(spec.config["n_skills"]),)
    losses: dict[tuple[int, bool | None], np.ndarray] = {}

    def score(d: int, on: bool | None) -> None:  # on None: lessons as the spec says
        losses[(d, on)] = held_out_loss(resolved_spec(n_skills=d, **({} if on is None else {"lessons": on}))[0])

    def best_d(on: bool | None) -> int:  # a tie keeps the smaller d
        return min(dims, key=lambda d: float(losses[(d, on)].mean()))

    on: bool | None = True if l_auto else None
    for d in dims:
        score(d, on)
    if l_auto:
        # the best d with lessons against the same d without; only when they go are the other
        # d fitted without them too (three fits where the lessons stay, as on MoFaCTS)
        d_with = best_d(True)
        score(d_with, False)
        keep, mean, se = lessons_verdict(losses[(d_with, True)], losses[(d_with, False)])
        if not keep:
            for d in dims:
                if (d, False) not in losses:
                    score(d, False)
        on = keep
    best = best_d(on)
    if d_auto:
        a, b = CANDIDATES
        diff = losses[(a, on)] - losses[(b, on)]
        se_d = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
        scores = ", ".join(f"d = {d} {losses[(d, on)].mean():.4f}" for d in CANDIDATES)
        lines.append(f"n_skills {best}: held-out log-loss {scores} (difference {float(diff.mean()):+.4f} ± {se_d:.4f}) "
                     f"{scope} of d = {' and '.join(map(str, CANDIDATES))}"
                     + ("" if on is None else f" {'with' if on else 'without'} lessons") + ")")
    if l_auto:
        lines.append(
            f"lessons {'on' if keep else 'off'}: held-out log-loss with d = {d_with} {losses[(d_with, True)].mean():.4f} "
            f"with the lessons, {losses[(d_with, False)].mean():.4f} without (difference {mean:+.4f} ± {se:.4f}; they "
            f"are dropped only when the model without them is lower by more than {LESSONS_MARGIN} and "
            f"{LESSONS_SE:g} SE) {scope}"
            + ("" if keep else "; a model without lessons has nothing to recommend: --lessons keeps them") + ")")
    chosen, why_history = resolved_spec(n_skills=best, **({} if on is None else {"lessons": on}))
    if why_history:
        lines.append(why_history)
    at = -2 if why_history else -1  # the last line of the check: how long it took
    lines[at] = f"{lines[at][:-1]}, {time.perf_counter() - t0:.1f} s)"
    return chosen, lines
