"""The report of a hierarchical fit shows the learned prior scales and how far each
assessment's bias was pooled towards the population mean."""

from __future__ import annotations

import bayes_lse as bl


def test_hierarchical_report_shows_scales_and_pooling(tmp_path):
    c = bl.simulate(n_students=15, n_steps=3, n_assessments=5, n_lessons=2, n_skills=1, seed=2,
                    model_config={"hierarchical": True})
    fit = bl.LatentSkillEmbedding(n_skills=1, hierarchical=True).fit(c.table, method="map", starts=1, maxiter=30,
                                                                    progressbar=False)
    html = fit.report(tmp_path / "r.html").read_text()
    assert "Learned prior scales (hierarchical model)" in html
    assert "sigma_assessment_bias" in html and "mu_assessment_bias" in html
    assert "pooled to μ_g" in html
    flat = bl.LatentSkillEmbedding(n_skills=1).fit(c.table, method="map", starts=1, maxiter=30, progressbar=False)
    assert "Learned prior scales" not in flat.report(tmp_path / "f.html").read_text()
