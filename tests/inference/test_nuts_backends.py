"""NUTS sampler options that do not need JAX: they reach the sampler, bad ones are refused
before anything is compiled.  (The JAX paths are in test_jax.py.)"""

from __future__ import annotations

import json

import pytest

import bayes_lse as bl


def test_nutpie_settings_reach_the_sampler(tiny_cohort):
    f = bl.LatentSkillEmbedding(n_skills=1, prerequisites=False).fit(
        tiny_cohort.table, method="nuts", chains=1, draws=20, tune=30, seed=1,
        adaptation="low_rank", target_accept=0.85,
    )
    settings = json.loads(f.idata["sample_stats"].attrs["inference_library_settings"])
    assert settings["adaptation"] == "low_rank"
    assert settings["settings"]["adapt_options"]["step_size_settings"]["target_accept"] == 0.85
    assert "num_eigenvalues" in f.idata["sample_stats"]  # a low-rank mass matrix was in use
    assert f.fit_config["adaptation"] == "low_rank"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sampler": "pymc", "adaptation": "low_rank"}, "adaptation"),
        ({"adaptation": "dense"}, "adaptation"),
        ({"chain_method": "threads"}, "chain_method"),
        ({"sampler": "stan"}, "sampler"),
    ],
)
def test_bad_nuts_options_are_refused(tiny_cohort, options, match):
    with pytest.raises(ValueError, match=match):
        bl.LatentSkillEmbedding(n_skills=1).fit(tiny_cohort.table, method="nuts", chains=1, draws=5, tune=5, **options)

