"""Tag effects (model config "tags"): assessments added after the fit predicted from their
tags (`FitResult.predict`, `FitResult.tag_means`), and the modules table carried through
save and load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_lse import LatentSkillEmbedding, load, simulate
from bayes_lse.data.modules import read_modules
from bayes_lse.results.storage import ModelFolderError


@pytest.fixture(scope="module")
def grouped():
    """A simulated log whose 16 assessments come in two tagged groups, one passed 90 % of
    the time and one 10 %; q0 (easy) and q8 (hard) are held out of the fit."""
    sim = simulate(n_students=60, n_steps=2, n_assessments=16, n_lessons=2, seed=5)
    t = sim.table.copy()
    rng = np.random.default_rng(0)
    a = t["module_type"] == "assessment"
    easy = a & (t["module_id"].str.extract(r"(\d+)$")[0].astype(float) < 8)
    t.loc[a, "outcome"] = np.where(easy[a], rng.random(a.sum()) < 0.9, rng.random(a.sum()) < 0.1).astype(float)
    assessments = sorted(t.loc[a, "module_id"].unique())
    group = {m: ("easy" if int("".join(ch for ch in m if ch.isdigit())) < 8 else "hard") for m in assessments}
    modules = read_modules(pd.DataFrame({"module_id": assessments, "module_type": "assessment",
                                         "tags": [group[m] for m in assessments]}))
    held = [m for m in assessments if int("".join(ch for ch in m if ch.isdigit())) in (0, 8)]
    train = t[~t["module_id"].isin(held)]
    fitted = LatentSkillEmbedding(n_skills=1, history=False).fit(train, method="map", starts=1, seed=0,
                                                                 modules=modules)
    rows = pd.DataFrame({"student_id": train["student_id"].iloc[0], "module_id": held, "module_type": "assessment",
                         "timestep": 0})
    return fitted, modules, rows, held


def test_tags_move_a_new_assessment_towards_its_group(grouped):
    fitted, modules, rows, held = grouped
    tau = fitted.idata.posterior["tag_bias"].mean(("chain", "draw")).to_series()
    assert tau["easy"] > tau["hard"] + 1.0  # the tag effects carry the groups' difficulty
    with_tags = fitted.predict(rows, seed=0).set_index("module_id")
    assert (with_tags["assessment_from"] == "tags").all() and not with_tags["assessment_seen"].any()
    fitted.modules = None
    try:
        without = fitted.predict(rows, seed=0).set_index("module_id")
    finally:
        fitted.modules = modules
    assert (without["assessment_from"] == "population").all()
    easy, hard = held
    assert with_tags.loc[easy, "p_mean"] > without.loc[easy, "p_mean"] + 0.1
    assert with_tags.loc[hard, "p_mean"] < without.loc[hard, "p_mean"] - 0.1


def test_a_tag_the_fit_never_saw_is_drawn_from_its_prior(grouped):
    fitted, modules, rows, held = grouped
    means, has = fitted.tag_means(["new-item", "q-none"], seed=0, unknown="prior")
    assert not has.any() and (means == 0).all()  # not in the table: no tags
    extra = read_modules(pd.concat([modules.to_frame(), pd.DataFrame(
        {"module_id": ["new-item"], "module_type": ["assessment"], "tags": ["unseen-tag"]})], ignore_index=True))
    fitted.modules = extra
    try:
        means, has = fitted.tag_means(["new-item"], seed=0, unknown="prior")
        dropped, has_d = fitted.tag_means(["new-item"], unknown="drop")
    finally:
        fitted.modules = modules
    assert has[0] and not has_d[0]
    sd = fitted.model_config["priors"]["tag_bias_sd"]
    assert means.shape == (fitted.n_samples, 1) and np.all(np.isfinite(means)) and np.std(means) <= 5 * sd


def test_the_modules_table_is_saved_hashed_and_loaded(grouped, tmp_path):
    fitted, modules, rows, held = grouped
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "modules.json").is_file()
    back = load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.modules.table, modules.table)
    pd.testing.assert_frame_equal(back.predict(rows, seed=0), fitted.predict(rows, seed=0))
    # tampered with → refused
    p = tmp_path / "m" / "modules.json"
    p.write_text(p.read_text().replace('"easy"', '"hard"', 1))
    with pytest.raises(ModelFolderError, match="modules.json does not match its recorded hash"):
        load(tmp_path / "m")
    # a modules.json the manifest does not list → refused
    fitted.modules = None
    try:
        fitted.save(tmp_path / "n")
    finally:
        fitted.modules = modules
    (tmp_path / "n" / "modules.json").write_text(modules.to_json())
    with pytest.raises(ModelFolderError, match="does not list"):
        load(tmp_path / "n")


def test_a_table_naming_none_of_the_logs_modules_is_refused(tiny_cohort):
    wrong = pd.DataFrame({"module_id": ["x1", "x2"], "module_type": "assessment", "tags": ["a", "b"]})
    with pytest.raises(ValueError, match="tags none of the log's modules"):
        LatentSkillEmbedding(n_skills=1).fit(tiny_cohort.table, method="map", starts=1, maxiter=5, modules=wrong)


@pytest.mark.filterwarnings("ignore:ADVI did not meet its stopping rule")
def test_advi_learns_the_tag_scale_and_hierarchical_map_says_it_has_none(grouped):
    fitted, modules, rows, held = grouped
    table = fitted.interactions  # the grouped log's training rows, as the fit kept them
    advi = LatentSkillEmbedding(n_skills=1, history=False).fit(table, method="advi", max_iterations=400, draws=50,
                                                                seed=0, modules=modules)
    s = advi.draws("sigma_tag_bias")
    assert s.shape[0] == 50 and np.std(s) > 0 and "tag_bias" in advi.idata.posterior
    pred = advi.predict(rows, seed=0)
    assert set(pred["assessment_from"]) <= {"tags", "population"}
    hier = LatentSkillEmbedding(n_skills=1, history=False, hierarchical=True).fit(
        table, method="map", starts=1, maxiter=50, seed=0, modules=modules)
    assert "tag_bias" not in hier.idata.posterior
    assert any(c.startswith("tag effects off") for c in hier.choices)
