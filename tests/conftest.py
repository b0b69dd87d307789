"""Shared fixtures: tiny simulated cohorts and quick fits, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYTENSOR_FLAGS", "")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The property-based tests (tests/*/test_*_properties.py) run a fast profile: together they
# add well under 30 s to a CI run. HYPOTHESIS_PROFILE=thorough for a longer hunt.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the test extra brings it; without it those files skip
    pass
else:
    settings.register_profile("fast", max_examples=40, deadline=None, database=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(scope="session")
def tiny_cohort():
    from bayes_lse import simulate

    return simulate(n_students=12, n_steps=4, n_assessments=5, n_lessons=3, seed=7)


@pytest.fixture(scope="session")
def tiny_map(tiny_cohort):
    from bayes_lse import LatentSkillEmbedding

    # history=False: the fixture is the model whose predictions tests push through by hand
    # (the default "auto" would add the history term: the tiny cohort repeats assessments)
    return LatentSkillEmbedding(n_skills=2, history=False).fit(tiny_cohort.table, method="map", starts=2, seed=1)


@pytest.fixture(scope="session")
def tiny_nuts(tiny_cohort):
    from bayes_lse import LatentSkillEmbedding

    return LatentSkillEmbedding(n_skills=2).fit(
        tiny_cohort.table, method="nuts", chains=2, draws=60, tune=60, seed=3
    )
