"""Shared fixtures: tiny simulated cohorts and quick fits, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYTENSOR_FLAGS", "")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_cohort():
    from bayes_lse import simulate

    return simulate(n_students=12, n_steps=4, n_assessments=5, n_lessons=3, seed=7)


@pytest.fixture(scope="session")
def tiny_map(tiny_cohort):
    from bayes_lse import LatentSkillEmbedding

    return LatentSkillEmbedding(n_skills=2).fit(tiny_cohort.table, method="map", starts=2, seed=1)


@pytest.fixture(scope="session")
def tiny_nuts(tiny_cohort):
    from bayes_lse import LatentSkillEmbedding

    return LatentSkillEmbedding(n_skills=2).fit(
        tiny_cohort.table, method="nuts", chains=2, draws=60, tune=60, seed=3
    )
