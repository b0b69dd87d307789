"""Issue 17 part 2, "a recommender a teacher or product team can read": taken lessons,
p_best over every sequence searched, grouping by lesson set, what is estimated in words,
evidence and costs, budgets for every model, work estimates. Canned posteriors only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bayes_lse.api import FittedLSE
from bayes_lse.recommend.sequences import ModuleDraws, recommend_sequences
from canned import nuts_idata, simulate_truth


def random_modules(seed: int, S: int = 200, L: int = 5, G: int = 2, d: int = 2, prereq: bool = True):
    rng = np.random.default_rng(seed)
    mods = ModuleDraws(
        gain=np.abs(rng.normal(0.6, 0.4, (S, L, d))),
        prerequisite=np.abs(rng.normal(0.6, 0.4, (S, L, d))) if prereq else None,
        requirement=np.abs(rng.normal(1.5, 0.4, (S, G, d))),
        lesson_ids=[f"L{k}" for k in range(L)],
        goal_ids=[f"A{g}" for g in range(G)],
        assessment_bias=rng.normal(0, 0.3, (S, G)),
        student_bias=rng.normal(0, 0.3, S),
    )
    return np.abs(rng.normal(0.5, 0.3, (S, d))), mods


def savable(tree):
    """A canned tree with the attributes a model folder checks on load."""
    from bayes_lse.core.config import config_hash
    from bayes_lse.inference.assemble import FORMAT_VERSION

    tree.attrs["data_fingerprint"] = "canned"
    tree.attrs["format_version"] = FORMAT_VERSION
    tree.attrs["config_hash"] = config_hash(json.loads(tree.attrs["model_config"]),
                                            json.loads(tree.attrs["fit_config"]), tree.attrs["method"], "canned")
    return tree


@pytest.fixture(scope="module")
def canned() -> FittedLSE:
    """A canned 6-lesson NUTS-shaped posterior (no fitting; 0.5 s)."""
    truth = simulate_truth(n_students=12, n_assessments=5, n_lessons=6, max_lessons=3, seed=0)
    return FittedLSE(savable(nuts_idata(truth, chains=2, draws=100)))


def taken_by(fitted: FittedLSE, student: str) -> set[str]:
    t = fitted.interactions
    t = t[(t.student_id == student) & (t.module_type == "lesson")]
    return set(t.module_id.astype(str))


# ------------------------------------------------------------------ 1. taken lessons
def test_taken_lessons_are_left_out_unless_allowed():
    state, mods = random_modules(1)
    rec = recommend_sequences(state, mods, max_length=2, search="exhaustive", top=None, taken=["L1", "L3"])
    used = {x for s in rec.table.lessons for x in s}
    assert used == {"L0", "L2", "L4"} and rec.excluded_taken == ("L1", "L3")
    assert "already taken" in rec.to_text() and json.loads(rec.to_json())["excluded_taken"] == ["L1", "L3"]
    again = recommend_sequences(state, mods, max_length=2, search="exhaustive", top=None, taken=["L1", "L3"],
                                allow_taken=True)
    assert {x for s in again.table.lessons for x in s} == {f"L{k}" for k in range(5)}
    assert again.excluded_taken == ()
    with pytest.raises(ValueError, match="every candidate lesson was already taken.*allow_taken"):
        recommend_sequences(state, mods, max_length=2, candidates=["L1"], taken=["L1"])


def test_api_and_cli_leave_out_the_students_logged_lessons(canned, tmp_path):
    done = taken_by(canned, "s001")
    assert done  # the canned student took lessons
    rec = canned.recommend("s001", ["A3", "A4"], max_length=2, top=None)
    assert not done & {x for s in rec.table.lessons for x in s}
    assert set(rec.excluded_taken) == done
    rec = canned.recommend("s001", ["A3", "A4"], max_length=2, top=None, allow_taken=True)
    assert done <= {x for s in rec.table.lessons for x in s}

    from bayes_lse.cli import main

    canned.save(tmp_path / "m")
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3",
                                  "--max-length", "1", "--format", "json", "--top", "20"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert not done & {x for s in out["sequences"] for x in s["lessons"]}
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3",
                                  "--max-length", "1", "--format", "json", "--top", "20", "--allow-retake"])
    assert r.exit_code == 0, r.output
    assert done <= {x for s in json.loads(r.stdout)["sequences"] for x in s["lessons"]}
