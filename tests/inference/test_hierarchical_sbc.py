"""Simulation-based calibration of the hierarchical model under NUTS (marker `slow`).

Each simulation draws hyperparameters, parameters and answers from the simulator (the
same joint distribution as the graph), fits NUTS, and ranks the true value of
identified quantities among the posterior draws: the pass probabilities of a few fixed
answers, and the assessment bias minus |a| (what the logit sees of a requirement's
length and the bias together).  If sampler and model agree the ranks are uniform.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse.model import terms as eq

pytestmark = pytest.mark.slow

N_SIMS = 30
N_DRAWS = 99  # ranks in 0..99 after thinning
BINS = 5


def _ranks(seed: int) -> list[int]:
    coh = bl.simulate(n_students=8, n_steps=3, n_assessments=4, n_lessons=2, n_skills=1, answers_per_step=2,
                      seed=seed, model_config={"hierarchical": True, "learning_noise": 0.3})
    fit = bl.LatentSkillEmbedding(n_skills=1, hierarchical=True, learning_noise=0.3).fit(
        coh.table, method="nuts", chains=1, draws=396, tune=400, seed=seed, progressbar=False, sampler="pymc")
    p = fit.pass_probability_draws()[::4][:N_DRAWS]  # (draws, answers)
    p_true = coh.table.loc[coh.table.module_type == "assessment", "p_true"].to_numpy()
    ranks = [int(np.sum(p[:, i] < p_true[i])) for i in (0, 5, 11, 17)]
    req = fit.draws("requirement")[::4][:N_DRAWS]
    offset = fit.draws("assessment_bias")[::4][:N_DRAWS] - eq.norm(req)
    a0 = fit.assessments[0]
    true = coh.truth["assessments"][a0]
    ranks.append(int(np.sum(offset[:, 0] < true["bias"] - float(eq.norm(np.asarray(true["requirement"]))))))
    return ranks


def test_ranks_of_identified_quantities_are_uniform():
    ranks = np.array([_ranks(seed) for seed in range(N_SIMS)])  # (sims, quantities)
    counts = np.stack([np.bincount(r * BINS // (N_DRAWS + 1), minlength=BINS) for r in ranks.T])
    # one chi-square over every quantity's histogram (each row sums to N_SIMS)
    chi2 = float(((counts - N_SIMS / BINS) ** 2 / (N_SIMS / BINS)).sum())
    dof = counts.shape[0] * (BINS - 1)
    p = stats.chi2.sf(chi2, dof)
    print(f"SBC: chi2 {chi2:.1f} on {dof} dof, p = {p:.3f}; bin counts\n{counts}")
    assert p > 0.001
