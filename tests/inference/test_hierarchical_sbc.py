"""Simulation-based calibration of the hierarchical model under NUTS (marker `slow`):
the simulator's hyperparameters, parameters and answers against the graph's learned
scales (`evaluate.calibration.run_sbc`, nutpie compiled once).  If sampler and model
agree, the ranks of every identified quantity are uniform."""

from __future__ import annotations

import pytest

import bayes_lse as bl
from bayes_lse.evaluate.calibration import design_from_shape, run_sbc

pytestmark = pytest.mark.slow


def test_hierarchical_model_ranks_are_uniform_on_a_small_design():
    design = design_from_shape(n_students=8, n_steps=3, n_assessments=4, n_lessons=1, answers_per_step=2, seed=0)
    spec = bl.LatentSkillEmbedding(n_skills=1, hierarchical=True)
    res = run_sbc(spec, design, n_simulations=60, draws=250, tune=300, chains=2, rank_draws=100, seed=1)
    print(res.summary[["quantity", "elements", "p_value", "p_adjusted"]].to_string(index=False))
    print(res.verdict(), "divergences", int(res.fits["divergences"].sum()))
    assert res.status != "fail", res.summary.to_string()
    assert (res.summary["p_adjusted"] >= 0.01).all()
