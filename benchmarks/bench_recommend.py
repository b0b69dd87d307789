"""Speed of the recommender (issue 4): prints figures, asserts nothing.

    python -m benchmarks.bench_recommend [--quick]       # from the repository root
    python -m benchmarks --cases recommend              # timed by the runner

`--quick` times each call once (not best of 3) and leaves out the slow
budgeted knapsack.

Targets on the 2-core reference machine: ranking every sequence of up to 3
lessons from 20 candidates with 1,000 draws, d = 2, in < 2 s; placing a new
student from 20 interactions with 1,000 draws in < 1 s.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from bayes_lse.recommend.sequences import ModuleDraws, count_sequences, place_student, recommend_sequences
from benchmarks.runner import emit_result


def _draws(rng: np.random.Generator, S: int, L: int, A: int, d: int) -> dict[str, np.ndarray]:
    return {
        "gain": np.abs(rng.normal(0.5, 0.3, (S, L, d))),
        "prerequisite": np.abs(rng.normal(0.5, 0.3, (S, L, d))),
        "requirement": np.abs(rng.normal(1.5, 0.3, (S, A, d))),
        "assessment_bias": rng.normal(0, 0.3, (S, A)),
    }


def _best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timing per call, no budgeted knapsack")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else 3
    figures: dict[str, float] = {}
    quality: dict[str, float] = {}
    rng = np.random.default_rng(0)
    S, L, A, d = 1000, 20, 30, 2
    dr = _draws(rng, S, L, A, d)
    lessons = [f"L{k:02d}" for k in range(L)]
    assessments = [f"A{j:02d}" for j in range(A)]
    goals = ["A00", "A01"]
    modules = ModuleDraws.from_arrays(
        gain=dr["gain"], prerequisite=dr["prerequisite"], lesson_ids=lessons,
        requirement=dr["requirement"], assessment_ids=assessments, goals=goals,
        assessment_bias=dr["assessment_bias"], student_bias=rng.normal(0, 0.3, S), noise=0.5**0.5,
    )
    state = np.abs(rng.normal(0.5, 0.3, (S, d)))
    print(f"draws S={S}, skills d={d}, candidates={L}, goals={len(goals)}, max_length=3\n")

    for repeats, label in [(False, "without repeats"), (True, "with repeats")]:
        n = count_sequences(L, 3, repeats)
        for noise in (False, True):
            t, rec = _best_of(lambda: recommend_sequences(
                state, modules, max_length=3, allow_repeats=repeats, search="exhaustive",
                include_noise=noise, seed=1), reps)
            assert rec.n_evaluated == n
            key = f"exhaustive_{'repeats' if repeats else 'norepeats'}_{'noise' if noise else 'expected'}_s"
            figures[key] = round(t, 3)
            if repeats and not noise:
                quality["sequences_ranked"] = n - 1
                quality["best_p_mean"] = round(float(rec.table.p_mean[0]), 4)
            print(f"exhaustive, {label:15s}, {'MC noise' if noise else 'expected update'}: "
                  f"{n:>5} sequences ({n - 1} of length 1-3)  {t:6.3f} s   best {rec.table.lessons[0]} "
                  f"p={rec.table.p_mean[0]:.3f}")

    t, rec = _best_of(lambda: recommend_sequences(state, modules, max_length=6, search="beam", beam_width=50), reps)
    figures["beam50_len6_s"] = round(t, 3)
    print(f"beam (width 50), max_length=6 without repeats: {rec.n_evaluated} sequences  {t:6.3f} s")

    # knapsack (no prerequisites): lessons that differ, as in a real posterior
    # (each lesson's draws scatter around its own gain), so the bounds can cut
    for Lk, ml, budget in [(20, 3, None), (40, 8, None)] + ([] if args.quick else [(40, 8, 12.0)]):
        g = np.abs(rng.normal(0, 0.6, (Lk, d))) * np.exp(rng.normal(0, 0.2, (S, Lk, d)))
        ids = [f"L{k:02d}" for k in range(Lk)]
        nop = ModuleDraws(gain=g, prerequisite=None, requirement=modules.requirement, lesson_ids=ids,
                          goal_ids=goals, assessment_bias=modules.assessment_bias, student_bias=modules.student_bias)
        costs = {k: float(c) for k, c in zip(ids, rng.integers(1, 4, Lk))} if budget else None
        t, rec = _best_of(lambda: recommend_sequences(state, nop, max_length=ml, search="knapsack",
                                                      costs=costs, budget=budget), reps)
        figures[f"knapsack_{Lk}_len{ml}{'_budget' if budget else ''}_s"] = round(t, 3)
        total = sum(math.comb(Lk, k) for k in range(ml + 1))
        print(f"knapsack, {Lk} lessons, max_length={ml}, budget={budget or ml} ({'costs 1-3' if costs else 'cost 1'}):"
              f" {rec.n_evaluated} of {total} sets evaluated  {t:6.3f} s")

    # placing a new student: 20 interactions (14 answers, 6 lessons)
    # its own generator, so the history is the same with and without --quick
    hrng = np.random.default_rng(20)
    hist = []
    ts = 0
    for i in range(20):
        if i % 3 == 2:
            hist.append(("lesson", lessons[hrng.integers(L)], None, ts))
            ts += 1
        else:
            hist.append(("assessment", assessments[hrng.integers(A)], int(hrng.integers(2)), ts))
    history = pd.DataFrame(hist, columns=["module_type", "module_id", "outcome", "timestep"])
    for K in (250, 500, 1000):
        t, pl = _best_of(lambda: place_student(
            history, requirement=dr["requirement"], assessment_ids=assessments, gain=dr["gain"],
            lesson_ids=lessons, prerequisite=dr["prerequisite"], assessment_bias=dr["assessment_bias"],
            bias_scale=1.0, n_particles=K, seed=2), reps)
        figures[f"place_student_{K}_particles_s"] = round(t, 3)
        quality[f"place_median_ess_{K}"] = round(float(np.median(pl.ess)), 1)
        print(f"place_student, 20 interactions, S={S}, {K} particles/draw: {t:6.3f} s   "
              f"median ESS {np.median(pl.ess):.0f}")

    place_default = figures["place_student_500_particles_s"]
    emit_result(
        "recommend",
        quality=quality,
        figures=figures,
        targets={
            "rank_8420_sequences_1000_draws": "< 2 s (exhaustive, with repeats, max_length 3, d = 2)",
            "place_new_student": "< 1 s (20 interactions, 1,000 draws, 500 particles per draw)",
        },
        notes=(
            f"ranking 8,420 sequences x 1,000 draws: {figures['exhaustive_repeats_expected_s']:.2f} s "
            f"(expected update), {figures['exhaustive_repeats_noise_s']:.2f} s (MC noise); placing a student "
            f"{place_default:.2f} s; {'single timing' if args.quick else 'best of 3'}, synthetic draws"
        ),
    )


if __name__ == "__main__":
    main()
