"""Statistical checks on simulated cohorts (marker `slow`; CI runs them).

Raw skill coordinates are not identified, so recovery is judged on invariant
quantities: pass probabilities, D-values, |a|.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayes_lse as bl
from bayes_lse.model import terms as eq
from bayes_lse.evaluate.metrics import auc

pytestmark = pytest.mark.slow


def held_out_split(table, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    students = table["student_id"].unique()
    held = set(rng.choice(students, size=int(len(students) * frac), replace=False))
    last = table.groupby("student_id")["timestep"].transform("max")
    mask = table["student_id"].isin(held) & (table["timestep"] == last) & (table["module_type"] == "assessment")
    return table[~mask], table[mask]


@pytest.fixture(scope="module")
def cohort300():
    return bl.simulate(n_students=300, n_steps=10, seed=1)


def test_map_predicts_held_out_answers_like_the_truth(cohort300):
    """Issue 2 done-criterion for MAP: held-out AUC within 0.05 of the AUC of p_true."""
    train, test = held_out_split(cohort300.table)
    fitted = bl.LatentSkillEmbedding().fit(train, method="map", seed=1)
    pred = fitted.predict(test)
    a_model = auc(pred["outcome"], pred["p_mean"])
    a_true = auc(pred["outcome"], pred["p_true"])
    print(f"MAP held-out AUC {a_model:.3f} vs p_true {a_true:.3f}")
    assert a_model >= a_true - 0.05
    gains = np.linalg.norm(fitted.draws("gain")[0], axis=-1)
    assert gains.mean() > 0.1, "MAP collapsed the lesson gains"


def test_nuts_recovers_identified_quantities():
    coh = bl.simulate(n_students=80, n_steps=6, n_assessments=10, n_lessons=5, answers_per_step=4, seed=5)
    f = bl.LatentSkillEmbedding().fit(coh.table, method="nuts", chains=2, draws=200, tune=300, seed=5)
    # pass probabilities of the observed rows
    p_draws = f.pass_probability_draws()
    p_true = coh.table.loc[coh.table.module_type == "assessment", "p_true"].to_numpy()
    r = np.corrcoef(p_draws.mean(0), p_true)[0, 1]
    assert r > 0.8, r
    lo, hi = np.quantile(p_draws, [0.05, 0.95], axis=0)
    coverage = np.mean((p_true >= lo) & (p_true <= hi))
    # both sides: a posterior far too wide covers everything.  Measured 2026-12: 90% intervals
    # cover 0.87, 50% intervals 0.47 (0.89 / 0.49 with a learned sigma_L)
    assert 0.75 < coverage < 0.97, coverage
    lo50, hi50 = np.quantile(p_draws, [0.25, 0.75], axis=0)
    coverage50 = np.mean((p_true >= lo50) & (p_true <= hi50))
    assert 0.3 < coverage50 < 0.7, coverage50
    # the learning dynamics: which lessons teach much and which little (|l| per lesson, a
    # length, invariant to skill permutations; measured r = 0.97, posterior norms shrunk
    # to ~0.7 of the truth by the half-normal prior).  A fit that ignored lessons would
    # leave the gains at their prior and fail this.
    gain_true = np.array([coh.truth["lessons"][lesson]["gain"] for lesson in f.lessons])
    gain_norm = eq.norm(f.draws("gain")).mean(0)
    r_gain = np.corrcoef(gain_norm, eq.norm(gain_true))[0, 1]
    assert r_gain > 0.8, (r_gain, gain_norm, eq.norm(gain_true))
    # per assessment, what the pass logit sees of its length and bias together: g_j − |a_j|
    # (invariant to permutations of skills).  |a| alone trades against g_j, so its own
    # recovery is weak and environment-dependent (0.48 with the 2026-12 dependency set,
    # above 0.5 before); the offset's correlation with the truth is 0.99 on the same fit.
    a_true = np.array([coh.truth["assessments"][a]["requirement"] for a in f.assessments])
    g_true = np.array([coh.truth["assessments"][a]["bias"] for a in f.assessments])
    offset = (f.draws("assessment_bias") - eq.norm(f.draws("requirement"))).mean(0)
    assert np.corrcoef(offset, g_true - eq.norm(a_true))[0, 1] > 0.9
    a_norm = eq.norm(f.draws("requirement")).mean(0)
    assert np.corrcoef(a_norm, eq.norm(a_true))[0, 1] > 0.3
    print(f"NUTS recovery: r(p)={r:.2f}, 90% coverage of p_true {coverage:.0%}, 50% {coverage50:.0%}, "
          f"r(|gain|)={r_gain:.2f}")


def test_nuts_recovers_a_learned_learning_noise():
    """learning_noise="learned": sigma_L's 90% interval covers the true sqrt(0.5) and is far
    narrower than the prior's (HalfNormal(1): 0.06-1.64).  Measured: 0.59-1.06."""
    coh = bl.simulate(n_students=80, n_steps=6, n_assessments=10, n_lessons=5, answers_per_step=4, seed=5)
    f = bl.LatentSkillEmbedding(learning_noise="learned").fit(coh.table, method="nuts", chains=2, draws=200,
                                                             tune=300, seed=5)
    lo, hi = np.quantile(f.draws("learning_noise"), [0.05, 0.95])
    truth = coh.truth["learning_noise"]
    print(f"sigma_L 90% interval [{lo:.2f}, {hi:.2f}], truth {truth:.3f}")
    assert lo <= truth <= hi
    assert hi - lo < 0.8, (lo, hi)


def test_nuts_predicts_held_out_answers_like_the_truth(cohort300):
    """Issue 2 done-criterion for NUTS: held-out AUC within 0.03 of the AUC of p_true,
    and 90% intervals that cover p_true for most rows."""
    train, test = held_out_split(cohort300.table)
    fitted = bl.LatentSkillEmbedding().fit(train, method="nuts", chains=2, draws=300, tune=300, seed=1)
    pred = fitted.predict(test)
    a_model = auc(pred["outcome"], pred["p_mean"])
    a_true = auc(pred["outcome"], pred["p_true"])
    cover = np.mean((pred["p_true"] >= pred["p_low"]) & (pred["p_true"] <= pred["p_high"]))
    print(f"NUTS held-out AUC {a_model:.3f} vs p_true {a_true:.3f}; 90% coverage {cover:.0%}")
    assert a_model >= a_true - 0.03
    assert cover >= 0.8
