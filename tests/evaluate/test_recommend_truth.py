"""The recommender against the truth (issue 4, marker `slow`): regret and band
coverage on a simulated cohort whose true parameters are known, and the blog's
Figure 4 fitted with the package. Figures: ``python -m benchmarks.recommend_truth``.

Setup (helpers in `bayes_lse/evaluate/recommend_truth.py`): 150 simulated students
(6 steps, 20 assessments, 10 lessons, d = 2, prerequisites and biases), one NUTS
fit (2 chains × 300 draws, 300 tune), cached for the module. Every student is
advised from their current (last fitted) state, candidates = all 10 lessons,
goals = the 1 or 2 (alternating) assessments the *fitted model* finds hardest
for that student (chosen without looking at the truth; random goals are mostly
passed already, which would make regret trivially small).

"The TRUE pass probability after a sequence" — the learning update is noisy, so
three truths are used, all under the true parameters:

* expected: the true state pushed through `equations.expected_next_state` with
  the true σ_L, then `pass_probability`. The default recommendation evaluates
  exactly this functional on every posterior draw, so its 5–95% band is a
  posterior band *of this quantity*: the like-with-like calibration check.
* averaged: the expectation over the true learning noise (Monte Carlo, 2,000
  paths shared by all sequences): the probability that the student passes.
  This is what a student wants maximised, so regret is judged on it too.
* realised: the pass probability after ONE draw of the true noise. With
  ``include_noise=True`` every posterior draw carries its own noise path, so
  that band is a posterior *predictive* band of this quantity.

The default band is NOT checked against the averaged truth (it is a band for
the expected-update prediction, and E[σ(·)] ≠ σ(E[·]) near 0 or 1): the
benchmark prints that figure for information.

Regret: the best achievable is found by enumerating every candidate sequence
(length 0..n, no repeats: 101 for n = 2, 821 for n = 3) under the truth; the
check is the mean over students of p_true(recommended) / p_true(best). As a
guard that the check has teeth, a random full-length sequence must score well
below the threshold.
"""

from __future__ import annotations


import numpy as np
import pytest


from bayes_lse.evaluate.recommend_truth import NUTS, coverage, evaluate, figure4, fit_cohort, regret

pytestmark = pytest.mark.slow

RATIO = 0.95  # issue 4: on average ≥ 95% of the best achievable true pass probability
COVERAGE = 0.85  # issue 4: the 90% band covers the truth for ≥ 85% of students
# ... and not for (nearly) all of them: a band far too wide covers everything.  With 150
# students the binomial sd at 0.9 is 0.025; measured 2026-12: 0.920, 0.920 and 0.927.
COVERAGE_MAX = 0.98


@pytest.fixture(scope="module")
def cohort_fit():
    cohort, fitted, _ = fit_cohort(seed=11)
    return cohort, fitted


@pytest.fixture(scope="module")
def two_lessons(cohort_fit):
    """Per student, max_length 2: default and include_noise recommendations,
    expected / averaged / realised truths."""
    return evaluate(*cohort_fit, 2, averaged=True, with_noise=True, n_noise=2000, seed=0)


@pytest.fixture(scope="module")
def three_lessons(cohort_fit):
    """Per student, max_length 3: default recommendation, expected truth (exact)."""
    return evaluate(*cohort_fit, 3, averaged=False, with_noise=False, seed=0)


def test_regret_up_to_two_lessons(two_lessons):
    df = two_lessons
    assert len(df) == 150
    figures = {
        "default, averaged truth": regret(df, "averaged"),
        "include_noise, averaged truth": regret(df, "averaged", "noise_"),
        "default, expected truth": regret(df, "expected"),
    }
    for name, r in figures.items():
        print(f"{name}: mean ratio {r['mean_ratio']:.3f} (ratio of means {r['ratio_of_means']:.3f}, "
              f"random sequence {r['random_ratio']:.3f}, no lesson {r['none_ratio']:.3f})")
        assert r["mean_ratio"] >= RATIO, (name, r)
        assert r["random_ratio"] < RATIO - 0.1, ("the goals are too easy for the check to mean anything", r)


def test_regret_up_to_three_lessons(three_lessons):
    r = regret(three_lessons, "expected")
    print(f"max_length 3: mean ratio {r['mean_ratio']:.3f} (random sequence {r['random_ratio']:.3f})")
    assert r["mean_ratio"] >= RATIO, r
    assert r["random_ratio"] < RATIO - 0.05, r


def test_default_band_covers_the_expected_update_truth(two_lessons, three_lessons):
    """Default (expected-update) band of the recommended sequence vs the truth
    pushed through the same expected update with the true parameters."""
    for n, df in ((2, two_lessons), (3, three_lessons)):
        c = coverage(df, "expected_rec")
        print(f"max_length {n}: coverage {c['coverage']:.3f} (below {c['below']:.3f}, above {c['above']:.3f})")
        assert COVERAGE <= c["coverage"] <= COVERAGE_MAX, (n, c)


def test_noise_band_covers_the_realised_truth(two_lessons):
    """include_noise=True band (posterior predictive over parameters and learning
    noise) vs the true pass probability after one draw of the true noise."""
    c = coverage(two_lessons, "noise_realised_rec", "noise_")
    print(f"include_noise: coverage {c['coverage']:.3f} (below {c['below']:.3f}, above {c['above']:.3f})")
    assert COVERAGE <= c["coverage"] <= COVERAGE_MAX, c


def test_blog_figure_4_fitted_only_mclovin_gains_from_l1():
    """Fig. 4 (`load_example("prerequisites")`) fitted by NUTS: P(pass A3) from each
    student's step-0 state (posterior draws), before vs after L1 through the
    recommender (expected update, per-draw σ_L). `fitted.recommend` starts from the
    *current* state, which is already after L1, so the step-0 state is passed to
    `recommend_sequences` directly. Only McLovin, who meets L1's prerequisites,
    should gain; everyone fails A3 at first."""
    import bayes_lse as bl
    from bayes_lse.data.examples import load_example

    # the blog's model: no assessment-history term (the default "auto" would add it: the toy repeats A3)
    fitted = bl.LatentSkillEmbedding(history=False).fit(load_example("prerequisites"), **NUTS, seed=4, progressbar=False)
    fig = figure4(fitted)
    print(fig.to_string())
    assert set(fig.index) == {"Fogell", "McLovin", "Evan", "Seth"}
    assert np.all(fig["p_before"] < 0.5)
    others = fig.drop(index="McLovin")
    mc = fig.loc["McLovin"]
    assert mc["gain"] >= 0.1 and mc["P(gain>0.1)"] >= 0.5, mc
    assert np.all(others["gain"] < 0.1) and np.all(others["P(gain>0.1)"] < 0.25), others
    assert mc["gain"] >= 3 * others["gain"].max(), fig
